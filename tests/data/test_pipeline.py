"""WSOL metadata folders through keras_has.data: formats, validation errors, eval round trip,
training determinism and hiding, normalisation statistics, and the real pets3 subset."""
import json
import logging
import os
import pathlib
import struct

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_has import data as D
from tests.helpers import jpeg_with_thumbnail, make_wsol_folder

# ---------------------------------------------------------------------------- helpers


def _jpeg_segments(data):
    """(marker, payload) segments up to and including SOS, and the entropy-coded scan."""
    i, segments = 2, []
    while True:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        segments.append((marker, data[i + 4:i + 2 + length]))
        i += 2 + length
        if marker == 0xDA:
            return segments, data[i:data.rfind(b"\xff\xd9")]


def make_cmyk_jpeg(cmyk):
    """A 4-component (Adobe CMYK) baseline JPEG built from four grayscale JPEG scans.

    OpenCV cannot write CMYK, so each channel is encoded as grayscale with identical
    tables and the scans are joined as four non-interleaved scans of one CMYK frame.
    """
    h, w, _ = cmyk.shape
    scans, tables = [], None
    for c in range(4):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(cmyk[:, :, c]),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        segments, scan = _jpeg_segments(buf.tobytes())
        tables = tables or [s for s in segments if s[0] in (0xDB, 0xC4)]
        scans.append(scan)
    seg = lambda marker, payload: bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    out = b"\xff\xd8" + seg(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
    out += b"".join(seg(m, p) for m, p in tables)
    out += seg(0xC0, struct.pack(">BHHB", 8, h, w, 4) + b"".join(bytes([k + 1, 0x11, 0]) for k in range(4)))
    for k, scan in enumerate(scans):
        out += seg(0xDA, bytes([1, k + 1, 0x00, 0, 63, 0])) + scan
    return out + b"\xff\xd9"


def _write(root, rel, lines):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


# Image id -> (height, width, label). RGB values are written below.
IMAGES = {
    "rgb.jpg": (24, 32, 0),
    "sub/gray.png": (20, 16, 1),
    "rgba.png": (16, 24, 2),
    "cmyk.jpg": (16, 24, 1),
    "png_named.jpg": (12, 12, 0),
}
RGB_VALUE = (200, 40, 90)
GRAY_VALUE = 77
RGBA_VALUE = (10, 120, 250, 128)
PNG_NAMED_VALUE = (5, 200, 60)
CMYK_VALUE = (200, 0, 150, 100)


def make_folder(root):
    """A tiny WSOL folder: 5 images in 5 formats, box / mask / png-only splits."""
    images = os.path.join(root, "images")
    os.makedirs(os.path.join(images, "sub"), exist_ok=True)
    rgb = np.zeros([24, 32, 3], np.uint8) + np.array(RGB_VALUE[::-1], np.uint8)  # BGR
    cv2.imwrite(os.path.join(images, "rgb.jpg"), rgb, [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(os.path.join(images, "sub", "gray.png"), np.full([20, 16], GRAY_VALUE, np.uint8))
    r, g, b, a = RGBA_VALUE
    cv2.imwrite(os.path.join(images, "rgba.png"), np.full([16, 24, 4], (b, g, r, a), np.uint8))
    with open(os.path.join(images, "cmyk.jpg"), "wb") as f:
        f.write(make_cmyk_jpeg(np.full([16, 24, 4], CMYK_VALUE, np.uint8)))
    ok, buf = cv2.imencode(".png", np.full([12, 12, 3], PNG_NAMED_VALUE[::-1], np.uint8))
    with open(os.path.join(images, "png_named.jpg"), "wb") as f:
        f.write(buf.tobytes())
    masks = os.path.join(root, "masks")
    os.makedirs(masks, exist_ok=True)
    m = np.zeros([24, 32], np.uint8)
    m[4:10, 6:20] = 255
    cv2.imwrite(os.path.join(masks, "rgb_a.png"), m)
    m2 = np.zeros([24, 32], np.uint8)
    m2[12:20, 2:5] = 255
    cv2.imwrite(os.path.join(masks, "rgb_b.png"), m2)
    ig = np.zeros([24, 32], np.uint8)
    ig[0:24, 0:8] = 255  # overlaps instance b: the overlap is not ignored
    cv2.imwrite(os.path.join(masks, "rgb_ignore.png"), ig)
    gm = np.zeros([10, 8], np.uint8)  # half-size mask: resized to the image
    gm[2:6, 1:4] = 255
    cv2.imwrite(os.path.join(masks, "gray.png"), gm)

    ids = list(IMAGES)
    _write(root, "class_names.txt", ["cat", "dog", "bird"])
    for split in ("train", "test", "test_mask"):
        _write(root, f"metadata/{split}/image_ids.txt", ids if split != "test_mask" else ids[:2])
        chosen = ids if split != "test_mask" else ids[:2]
        _write(root, f"metadata/{split}/class_labels.txt", [f"{i},{IMAGES[i][2]}" for i in chosen])
        _write(root, f"metadata/{split}/image_sizes.txt",
               [f"{i},{IMAGES[i][1]},{IMAGES[i][0]}" for i in chosen])
    boxes = {
        "rgb.jpg": ["1,2,10,20", "16,0,31,23"],           # two boxes
        "sub/gray.png": ["0,0,15,19"],
        "rgba.png": ["3,3,25,12"],                        # x1 2 px beyond width 24: clipped to 23
        "cmyk.jpg": ["2,4,9,9"],
        "png_named.jpg": ["0,0,5,5", "6,6,11,11", "3,3,8,8"],
    }
    _write(root, "metadata/train/localization.txt", [f"{i},{b}" for i in ids for b in boxes[i]])
    _write(root, "metadata/test/localization.txt", [f"{i},{b}" for i in ids for b in boxes[i]])
    _write(root, "metadata/test_mask/localization.txt", [
        "rgb.jpg,masks/rgb_a.png,masks/rgb_ignore.png",
        "rgb.jpg,rgb_b.png,masks/rgb_ignore.png",   # relative to ROOT/masks
        "sub/gray.png,masks/gray.png,",
    ])
    # A lossless split for exact statistics.
    png_ids = ["sub/gray.png", "rgba.png", "png_named.jpg"]
    _write(root, "metadata/pngs/image_ids.txt", png_ids)
    _write(root, "metadata/pngs/class_labels.txt", [f"{i},{IMAGES[i][2]}" for i in png_ids])
    _write(root, "metadata/pngs/localization.txt", [f"{i},0,0,1,1" for i in png_ids])
    return root


@pytest.fixture
def folder(tmp_path):
    return make_folder(str(tmp_path / "wsol"))


NO_NORM = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _collect(ds):
    """Concatenates batches; `boxes` are re-padded with -1 to the largest M seen."""
    batches = list(ds.as_numpy_iterator())
    m = max(b["boxes"].shape[1] for b in batches)
    for b in batches:
        pad = m - b["boxes"].shape[1]
        b["boxes"] = np.pad(b["boxes"], [(0, 0), (0, pad), (0, 0)], constant_values=-1)
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


# ---------------------------------------------------------------------------- formats


def test_raw_load_converts_every_format_to_rgb(folder):
    source = D.get_source(folder)
    assert source.num_classes == 3 and source.class_names == ("cat", "dog", "bird")
    examples = {e["image_id"].decode(): e for e in source.load("train").as_numpy_iterator()}
    for image_id, (h, w, label) in IMAGES.items():
        ex = examples[image_id]
        assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8, image_id
        assert ex["label"] == label
    np.testing.assert_allclose(examples["rgb.jpg"]["image"].reshape(-1, 3).mean(0), RGB_VALUE, atol=2)
    np.testing.assert_array_equal(np.unique(examples["sub/gray.png"]["image"]), [GRAY_VALUE])
    np.testing.assert_array_equal(examples["rgba.png"]["image"][0, 0], RGBA_VALUE[:3])
    np.testing.assert_array_equal(examples["png_named.jpg"]["image"][0, 0], PNG_NAMED_VALUE)
    # CMYK: the same colour as OpenCV's (Adobe inverted CMYK) conversion, within JPEG error.
    reference = cv2.imread(os.path.join(folder, "images", "cmyk.jpg"), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert reference.shape == (16, 24, 3)
    np.testing.assert_allclose(examples["cmyk.jpg"]["image"].astype(float), reference, atol=3)
    # Independent check of the colour: R = (255 - C) inverted Adobe data, i.e. C * K / 255.
    c, m, y, k = CMYK_VALUE
    np.testing.assert_allclose(examples["cmyk.jpg"]["image"][0, 0], [c * k / 255, m * k / 255, y * k / 255], atol=3)
    # Several boxes per image, in file order; the out-of-image box is clipped.
    np.testing.assert_array_equal(examples["rgb.jpg"]["boxes"], [[1, 2, 10, 20], [16, 0, 31, 23]])
    np.testing.assert_array_equal(examples["rgba.png"]["boxes"], [[3, 3, 23, 12]])
    assert examples["png_named.jpg"]["boxes"].shape == (3, 4)


def test_eval_dataset_round_trip_boxes_and_metadata(folder):
    out = _collect(D.make_eval_dataset(folder, 16, 2, split="test", **NO_NORM))
    assert out["image"].shape == (5, 16, 16, 3) and out["image"].dtype == np.float32
    ids = [i.decode() for i in out["image_id"]]
    assert ids == list(IMAGES)
    np.testing.assert_array_equal(out["label"], [IMAGES[i][2] for i in ids])
    np.testing.assert_array_equal(out["original_size"], [IMAGES[i][:2] for i in ids])
    np.testing.assert_array_equal(out["num_boxes"], [2, 1, 1, 1, 3])
    # Hand-computed: int(x * 16 / w), int(y * 16 / h).
    batches = list(D.make_eval_dataset(folder, 16, 2, split="test", **NO_NORM))
    assert [b["boxes"].shape[1] for b in batches] == [2, 1, 3]  # M = most boxes per batch
    rgb = out["boxes"][0, :2]   # 24 x 32 image
    np.testing.assert_array_equal(rgb, [[0, 1, 5, 13], [8, 0, 15, 15]])
    gray = out["boxes"][1, :2]  # 20 x 16 image, padded row
    np.testing.assert_array_equal(gray, [[0, 0, 15, 15], [-1, -1, -1, -1]])
    rgba = out["boxes"][2]  # 16 x 24 image; box clipped to (3, 3, 23, 12) first
    np.testing.assert_array_equal(rgba[:1], [[2, 3, 15, 12]])
    png = out["boxes"][4]   # 12 x 12
    np.testing.assert_array_equal(png, [[0, 0, 6, 6], [8, 8, 14, 14], [4, 4, 10, 10]])
    # Constant images stay constant through the resize.
    np.testing.assert_allclose(out["image"][1], GRAY_VALUE, atol=1e-3)
    np.testing.assert_allclose(out["image"][4], np.broadcast_to(PNG_NAMED_VALUE, (16, 16, 3)), atol=1e-3)
    assert "mask" not in out


def test_eval_dataset_fixed_max_boxes_and_normalisation(folder):
    ds = D.make_eval_dataset(folder, 8, 5, split="test", mean=(10.0, 20.0, 30.0),
                             std=(2.0, 4.0, 5.0), max_boxes=4)
    batch = next(iter(ds))
    assert batch["boxes"].shape == (5, 4, 4)
    np.testing.assert_array_equal(batch["boxes"][1, 1:].numpy(), -np.ones([3, 4]))
    expected = (np.array(PNG_NAMED_VALUE, np.float32) - [10, 20, 30]) / [2, 4, 5]
    np.testing.assert_allclose(batch["image"][4, 3, 3].numpy(), expected, atol=1e-3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_boxes=2"):
        list(D.make_eval_dataset(folder, 8, 5, split="test", max_boxes=2, **NO_NORM))


def test_a_cached_eval_dataset_reads_its_files_once(folder):
    import shutil

    source = D.get_source(folder)
    # 5 test images of 16 x 16 x 3 float32; the mask split adds a float32 mask and a
    # bool ignore per pixel.
    assert D.eval_cache_bytes(source, 16, "test") == 5 * 16 * 16 * 12
    assert D.eval_cache_bytes(source, 16, "test_mask") == 2 * 16 * 16 * 17
    ds = D.make_eval_dataset(source, 16, 2, split="test", cache=True, **NO_NORM)
    first = _collect(ds)
    shutil.rmtree(os.path.join(folder, "images"))  # a second read would fail now
    second = _collect(ds)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(second[key], first[key], err_msg=key)
    with pytest.raises(tf.errors.NotFoundError):  # not cached: reads the files again
        _collect(D.make_eval_dataset(source, 16, 2, split="test", **NO_NORM))


def test_mask_split_unions_instances_and_ignore(folder):
    source = D.get_source(folder)
    assert source.has_masks("test_mask") and not source.has_masks("test")
    raw = {e["image_id"].decode(): e for e in source.load("test_mask").as_numpy_iterator()}
    mask = raw["rgb.jpg"]["mask"]
    expected = np.zeros([24, 32], bool)
    expected[4:10, 6:20] = True
    expected[12:20, 2:5] = True
    np.testing.assert_array_equal(mask, expected)
    ignore = np.zeros([24, 32], bool)
    ignore[:, 0:8] = True
    np.testing.assert_array_equal(raw["rgb.jpg"]["ignore"], ignore & ~expected)
    np.testing.assert_array_equal(raw["rgb.jpg"]["boxes"], [[2, 4, 19, 19]])  # tight box of the union
    gray = raw["sub/gray.png"]  # 10x8 mask resized (nearest, x2) to 20x16; empty ignore
    assert gray["mask"].shape == (20, 16) and not gray["ignore"].any()
    np.testing.assert_array_equal(np.argwhere(gray["mask"]).min(0), [4, 2])
    np.testing.assert_array_equal(np.argwhere(gray["mask"]).max(0), [11, 7])

    out = _collect(D.make_eval_dataset(source, 16, 2, split="test_mask", **NO_NORM))
    assert out["mask"].shape == (2, 16, 16) and out["mask"].dtype == np.float32
    assert set(np.unique(out["mask"])) <= {0.0, 1.0}
    assert out["ignore"].dtype == bool
    # 24x32 -> 16x16 nearest: rows 4..9 -> 3..6 (scale 2/3), cols 6..19 -> 3..9 (scale 1/2).
    np.testing.assert_array_equal(out["mask"][0, 3:7, 3:10], 1.0)
    assert out["mask"][0, 0:2].sum() == 0
    np.testing.assert_array_equal(out["boxes"][0], [[1, 2, 9, 12]])


# ---------------------------------------------------------------------------- bad input


def _edit(root, rel, transform):
    path = os.path.join(root, rel)
    with open(path) as f:
        lines = f.read().splitlines()
    _write(root, rel, transform(lines))


def test_missing_image_names_file_and_line(folder):
    os.remove(os.path.join(folder, "images", "rgba.png"))
    source = D.get_source(folder)
    with pytest.raises(D.MetadataError, match=r"train/image_ids\.txt:3: image .*rgba\.png.*file not found"):
        D.make_train_dataset(source, 8, 2, **NO_NORM)


def test_corrupt_image_error_and_skip_corrupt_counts(folder, caplog):
    with open(os.path.join(folder, "images", "cmyk.jpg"), "wb") as f:
        f.write(b"this is not an image")
    with open(os.path.join(folder, "images", "rgb.jpg"), "r+b") as f:
        f.truncate(12)  # JPEG magic, no frame header
    with pytest.raises(D.MetadataError, match=r"image_ids\.txt:1: .*rgb\.jpg.*truncated or corrupt"):
        D.read_split(folder, "train")
    source = D.get_source(folder, skip_corrupt=True)
    with caplog.at_level(logging.WARNING, logger="keras_has.data.wsol_metadata"):
        meta = source.split_metadata("test")
    assert meta.num_skipped == 2 and len(meta) == 3
    skip_lines = [r for r in caplog.records if "skipped 2 missing or corrupt" in r.getMessage()]
    assert len(skip_lines) == 1
    out = _collect(D.make_eval_dataset(source, 8, 4, split="test", **NO_NORM))
    assert [i.decode() for i in out["image_id"]] == ["sub/gray.png", "rgba.png", "png_named.jpg"]


def test_decode_verification_catches_undecodable_png(folder):
    path = os.path.join(folder, "images", "rgba.png")
    with open(path, "rb") as f:
        head = f.read(40)
    with open(path, "wb") as f:
        f.write(head)  # valid signature and IHDR, no image data, no end
    with pytest.raises(D.MetadataError, match=r"image_ids\.txt:3: .*truncated image"):
        D.read_split(folder, "train")  # the header check sees the missing IEND
    with open(path, "wb") as f:  # an IEND chunk, but still no image data
        f.write(head + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    D.read_split(folder, "train")  # header check passes
    with pytest.raises(D.MetadataError, match=r"image_ids\.txt:3: .*OpenCV could not decode"):
        D.read_split(folder, "train", verify="decode")


@pytest.mark.parametrize("rel, transform, pattern", [
    ("metadata/test/localization.txt", lambda ls: ls + ["nope.jpg,1,1,2,2"],
     r"test/localization\.txt:9: image id 'nope\.jpg' is not in .*image_ids\.txt"),
    ("metadata/test/class_labels.txt", lambda ls: ls + ["ghost.jpg,0"],
     r"test/class_labels\.txt:6: image id 'ghost\.jpg' is not in"),
    ("metadata/test/class_labels.txt", lambda ls: [ls[0], "sub/gray.png,3"] + ls[2:],
     r"test/class_labels\.txt:2: label 3 of 'sub/gray\.png' is out of range; expected \[0, 3\)"),
    ("metadata/test/class_labels.txt", lambda ls: [ls[0], "sub/gray.png,-1"] + ls[2:],
     r"class_labels\.txt:2: label -1 .*out of range"),
    ("metadata/test/localization.txt", lambda ls: [ls[0], "rgb.jpg,20,0,10,5"] + ls[2:],
     r"test/localization\.txt:2: box \(20, 0, 10, 5\) of 'rgb\.jpg' has x1 < x0"),
    ("metadata/test/image_ids.txt", lambda ls: [],
     r"test/image_ids\.txt: the split 'test' is empty"),
    ("metadata/test/image_sizes.txt", lambda ls: ["rgb.jpg,33,24"] + ls[1:],
     r"test/image_sizes\.txt:1: size of 'rgb\.jpg' is given as 33x24 .* image file is 32x24"),
    ("metadata/test/localization.txt", lambda ls: [ls[0], "rgb.jpg,1,x,3,4"] + ls[2:],
     r"test/localization\.txt:2: expected an integer box coordinate, received 'x'"),
])
def test_bad_metadata_names_file_and_line(folder, rel, transform, pattern):
    _edit(folder, rel, transform)
    with pytest.raises(D.MetadataError, match=pattern):
        D.make_eval_dataset(folder, 8, 2, split="test", **NO_NORM)


def test_boxes_outside_image_are_clipped_and_counted(folder, caplog):
    _edit(folder, "metadata/test/localization.txt",
          lambda ls: ls + ["cmyk.jpg,-2,-1,25,15", "cmyk.jpg,0,0,23,15"])
    with caplog.at_level(logging.WARNING, logger="keras_has.data.wsol_metadata"):
        meta = D.read_split(folder, "test")
    assert meta.num_clipped == 2  # rgba's x1 = 25 and the first new line (2 px out at most)
    i = meta.image_ids.index("cmyk.jpg")
    np.testing.assert_array_equal(meta.boxes(i), [[2, 4, 9, 9], [0, 0, 23, 15], [0, 0, 23, 15]])
    assert sum("clipped 2 box(es)" in r.getMessage() for r in caplog.records) == 1


def test_box_far_outside_its_image_is_an_error_naming_the_line_unless_clipped(folder, caplog):
    _edit(folder, "metadata/test/localization.txt",
          lambda ls: ls + ["cmyk.jpg,5000,5000,6000,6000"])
    line = len((pathlib.Path(folder) / "metadata/test/localization.txt").read_text().splitlines())
    with pytest.raises(D.MetadataError, match=rf"test/localization\.txt:{line}: box \(5000, "
                       rf"5000, 6000, 6000\) of 'cmyk\.jpg' reaches 5985 px outside its 24x16"):
        D.read_split(folder, "test")
    with caplog.at_level(logging.WARNING, logger="keras_has.data.wsol_metadata"):
        meta = D.read_split(folder, "test", clip_boxes=True)
    assert meta.num_clipped == 2
    assert any(f"localization.txt:{line}: box (5000" in r.getMessage() for r in caplog.records)


def test_unknown_source_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown source 'cub'.*'caltech_birds2011'.*'synthetic'"):
        D.get_source("cub")
    with pytest.raises(ValueError, match="not a WSOL metadata folder"):
        D.get_source(str(tmp_path))
    assert {"synthetic", "caltech_birds2011", "oxford_iiit_pet", "stanford_dogs",
            "imagenet2012"} <= set(D.list_sources())


def test_bad_pipeline_arguments(folder):
    with pytest.raises(ValueError, match="no split 'val'.*'test'"):
        D.make_eval_dataset(folder, 8, 2, split="val", **NO_NORM)
    with pytest.raises(ValueError, match="`image_size` must be an int >= 1; received 0"):
        D.make_train_dataset(folder, 0, 2, **NO_NORM)
    with pytest.raises(ValueError, match="`hiding` has unknown keys \\['fill'\\]"):
        D.make_train_dataset(folder, 8, 2, hiding={"fill": 1.0}, **NO_NORM)
    with pytest.raises(ValueError, match="`std` must be positive"):
        D.make_train_dataset(folder, 8, 2, mean=(0, 0, 0), std=(1, 0, 1))
    with pytest.raises(ValueError, match="given together"):
        D.make_train_dataset(folder, 8, 2, mean=(0, 0, 0))


# ---------------------------------------------------------------------------- training


def _epochs(ds, n=2):
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(n)]


def test_train_dataset_shapes_and_determinism(folder):
    kwargs = dict(hiding={"grid_sizes": (4,), "hide_prob": 0.5}, **NO_NORM)
    a = _epochs(D.make_train_dataset(folder, 12, 2, seed=3, **kwargs))
    b = _epochs(D.make_train_dataset(folder, 12, 2, seed=3, **kwargs))
    c = _epochs(D.make_train_dataset(folder, 12, 2, seed=4, **kwargs), n=1)
    x, y = a[0][0]
    assert x.shape == (2, 12, 12, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert [len(e) for e in a] == [3, 3]  # 5 images, batch 2, remainder kept
    for ea, eb in zip(a, b):
        for (xa, ya), (xb, yb) in zip(ea, eb):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    flat = lambda e: np.concatenate([x.ravel() for x, _ in e])
    assert not np.array_equal(flat(a[0]), flat(c[0]))  # another seed
    assert not np.array_equal(flat(a[0]), flat(a[1]))  # a fresh epoch
    # Every label is seen once per epoch.
    labels = sorted(np.concatenate([y for _, y in a[1]]).tolist())
    assert labels == sorted(v[2] for v in IMAGES.values())
    dropped = D.make_train_dataset(folder, 12, 2, seed=3, drop_remainder=True, **NO_NORM)
    assert dropped.element_spec[0].shape.as_list() == [2, 12, 12, 3]
    assert len(list(dropped)) == 2


def test_hiding_masks_differ_per_image_in_a_batch(tmp_path):
    # Constant, non-zero images: with mean 0 / std 1, the hidden pixels are exactly the zeros.
    root = str(tmp_path / "const")
    os.makedirs(os.path.join(root, "images"))
    ids = [f"c{i}.png" for i in range(8)]
    for i in ids:
        cv2.imwrite(os.path.join(root, "images", i), np.full([20, 20, 3], 100, np.uint8))
    _write(root, "metadata/train/image_ids.txt", ids)
    _write(root, "metadata/train/class_labels.txt", [f"{i},0" for i in ids])
    _write(root, "metadata/train/localization.txt", [f"{i},0,0,19,19" for i in ids])
    x, _ = next(iter(D.make_train_dataset(root, 16, 8, seed=0, hiding={"grid_sizes": (4,), "hide_prob": 0.5},
                                          **NO_NORM)))
    hidden = (x.numpy() == 0).all(-1)
    assert len({h.tobytes() for h in hidden}) == 8  # eight different masks
    np.testing.assert_allclose(x.numpy()[~hidden], 100.0, atol=1e-3)
    assert 0.2 < hidden.mean() < 0.8  # 8 * 16 cells at p = 0.5
    # Patches are whole 4x4 cells.
    cells = hidden.reshape(8, 4, 4, 4, 4).transpose(0, 1, 3, 2, 4).reshape(8, 16, 16)
    assert np.all(cells.all(-1) | ~cells.any(-1))
    x0, _ = next(iter(D.make_train_dataset(root, 16, 8, seed=0, **NO_NORM)))
    np.testing.assert_allclose(x0.numpy(), 100.0, atol=1e-3)  # no hiding: nothing is zero


# ---------------------------------------------------------------------------- statistics


def test_normalization_matches_numpy_and_is_cached(folder, tmp_path):
    pixels = np.concatenate([
        np.full([20 * 16, 3], GRAY_VALUE, np.float64),
        np.tile(np.array(RGBA_VALUE[:3], np.float64), (16 * 24, 1)),
        np.tile(np.array(PNG_NAMED_VALUE, np.float64), (12 * 12, 1)),
    ])
    mean, std = D.get_normalization(folder, split="pngs")
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-7)
    cache = os.path.join(folder, "metadata", "pngs", "keras_has_normalization_pngs.json")
    with open(cache) as f:
        cached = json.load(f)
    np.testing.assert_allclose(cached["mean"], mean)
    # The cache is used: doctor it and read it back.
    cached["mean"] = [1.0, 2.0, 3.0]
    with open(cache, "w") as f:
        json.dump(cached, f)
    assert D.get_normalization(folder, split="pngs")[0] == (1.0, 2.0, 3.0)
    # A changed split (another fingerprint) is recomputed.
    for name in ("image_ids", "class_labels", "localization"):
        _edit(folder, f"metadata/pngs/{name}.txt", lambda ls: ls[:2])
    mean2, _ = D.get_normalization(folder, split="pngs")
    np.testing.assert_allclose(mean2, pixels[:20 * 16 + 16 * 24].mean(0), rtol=1e-9)
    # cache_dir for read-only data.
    mean3, _ = D.get_normalization(folder, split="pngs", cache_dir=str(tmp_path / "cache"))
    assert mean3 == mean2 and len(os.listdir(tmp_path / "cache")) == 1
    # The pipelines default to these statistics.
    x = next(iter(D.make_eval_dataset(folder, 8, 3, split="pngs", stats_split="pngs")))["image"]
    np.testing.assert_allclose(x[0, 0, 0].numpy(), (GRAY_VALUE - np.array(mean2)) / np.array(D.get_normalization(folder, "pngs")[1]), atol=1e-4)


def test_imagenet_constants_are_in_pixel_scale():
    np.testing.assert_allclose(D.IMAGENET_MEAN, np.array([0.485, 0.456, 0.406]) * 255)
    np.testing.assert_allclose(D.IMAGENET_STD, np.array([0.229, 0.224, 0.225]) * 255)


# ---------------------------------------------------------------------------- real data


def test_pets3_smoke(pets3_root, tmp_path):
    source = D.get_source(str(pets3_root))
    assert source.num_classes == 3 and {"train", "test", "test_head", "test_mask"} <= set(source.splits)
    stats = dict(mean=(120.0, 110.0, 100.0), std=(60.0, 60.0, 60.0))
    batch = next(iter(D.make_eval_dataset(source, 32, 4, split="test", **stats)))
    boxes, sizes = batch["boxes"].numpy(), batch["original_size"].numpy()
    assert boxes.shape[1:] == (1, 4) and (boxes >= 0).all() and (boxes <= 31).all()
    # Compare with the metadata by hand for the first image.
    meta = source.split_metadata("test")
    h, w = sizes[0]
    x0, y0, x1, y1 = meta.boxes(0)[0]
    np.testing.assert_array_equal(boxes[0, 0], [int(x0 * 32 / w), int(y0 * 32 / h), int(x1 * 32 / w), int(y1 * 32 / h)])
    masks = next(iter(D.make_eval_dataset(source, 32, 2, split="test_mask", **stats)))
    assert masks["mask"].shape == (2, 32, 32) and 0 < float(masks["mask"].numpy().mean()) < 1
    x, y = next(iter(D.make_train_dataset(source, 32, 4, seed=0, hiding={"grid_sizes": (8,), "hide_prob": 0.5},
                                          **stats)))
    assert x.shape == (4, 32, 32, 3) and np.isfinite(x.numpy()).all() and set(y.numpy()) <= {0, 1, 2}


def test_statistics_cache_follows_the_image_files_not_only_their_names(folder, tmp_path):
    source = D.get_source(folder)
    _, _, before = source.stats_location("train")
    assert source.stats_location("train")[2] == before  # stable while nothing changes
    path = os.path.join(folder, "images", "cmyk.jpg")
    with open(path, "ab") as f:  # same name, other bytes (trailing data still decodes)
        f.write(b"\0" * 16)
    after = D.get_source(folder).stats_location("train")[2]
    assert after != before


def test_truncated_jpeg_with_a_valid_header_is_named_before_training(folder):
    path = os.path.join(folder, "images", "rgb.jpg")
    data = open(path, "rb").read()
    with open(path, "wb") as f:  # the header (and its size) intact, the scan cut short
        f.write(data[: len(data) * 2 // 3])
    assert D.wsol_metadata.image_header_size(path) == (32, 24)
    with pytest.raises(D.MetadataError, match=r"train/image_ids\.txt:1: image .*rgb\.jpg' is "
                                              r"unusable: truncated image: no end marker"):
        D.read_split(folder, "train")
    meta = D.read_split(folder, "train", skip_corrupt=True)
    assert "rgb.jpg" not in meta.image_ids and meta.num_skipped == 1


def test_a_cut_camera_photo_is_found_although_its_thumbnail_ends_in_an_eoi(tmp_path):
    """Camera JPEGs carry an EXIF thumbnail whose own end marker (FF D9) sits in the
    APP1 segment; a file cut short after it must still count as truncated."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    thumb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    data = jpeg_with_thumbnail(image, thumb)
    path = tmp_path / "camera.jpg"
    path.write_bytes(data)
    assert D.wsol_metadata.check_image(str(path)) == (128, 96)
    cut = data[:int(len(data) * 0.8)]
    assert b"\xff\xd9" in cut  # the thumbnail's end marker survives the cut
    path.write_bytes(cut)
    with pytest.raises(ValueError, match="truncated image: no end marker"):
        D.wsol_metadata.check_image(str(path))


def test_an_evaluated_image_without_a_box_line_is_named(tmp_path):
    root = tmp_path / "wsol"
    make_wsol_folder(root, n_train=4, n_test=3)
    loc = root / "metadata" / "test" / "localization.txt"
    lines = loc.read_text().splitlines()
    loc.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # the 2nd image loses its box
    unboxed = (root / "metadata" / "test" / "image_ids.txt").read_text().splitlines()[1]
    source = D.get_source(str(root))
    assert len(source.split_metadata("test")) == 3  # reading the split is fine
    with pytest.raises(D.MetadataError, match=rf"localization.txt: image '{unboxed}' \(line 2 "
                                              r"of .*image_ids.txt\) has no box line"):
        D.make_eval_dataset(source, 32, 2, split="test")


@pytest.mark.parametrize("name", ["image_ids.txt", "class_labels.txt", "localization.txt"])
def test_metadata_is_utf8_with_or_without_a_bom_and_a_bad_byte_is_named(tmp_path, name):
    root = tmp_path / "wsol"
    make_wsol_folder(root, n_train=4, n_test=2)
    path = root / "metadata" / "train" / name
    data = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + data)  # a byte-order mark, as Notepad writes
    assert len(D.read_split(str(root), "train")) == 4
    lines = data.splitlines(keepends=True)
    lines[2] = lines[2][:4] + b"\xff" + lines[2][4:]
    path.write_bytes(b"".join(lines))
    with pytest.raises(D.MetadataError, match=rf"train/{name}:3: expected UTF-8 text, "
                                              r"received the byte 0xff at column 5"):
        D.read_split(str(root), "train")



def test_large_jpegs_decode_at_a_reduced_scale_that_keeps_the_min_side():
    from keras_has.data.sources import decode_image

    rng = np.random.default_rng(0)
    small = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (512, 384))
    jpeg = tf.constant(cv2.imencode(".jpg", small)[1].tobytes())
    png = tf.constant(cv2.imencode(".png", small)[1].tobytes())
    # shorter side 384: 1/8 keeps 48 >= 40; 1/2 keeps 192 >= 100 but 1/4 (96) would not
    assert decode_image(jpeg, min_side=40).shape == (48, 64, 3)
    assert decode_image(jpeg, min_side=100).shape == (192, 256, 3)
    assert decode_image(jpeg, min_side=200).shape == (384, 512, 3)
    assert decode_image(png, min_side=40).shape == (384, 512, 3)  # only JPEGs are scaled
    whole = decode_image(jpeg).numpy().astype(np.float32)
    eighth = decode_image(jpeg, min_side=40).numpy().astype(np.float32)
    area = cv2.resize(whole, (64, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(eighth - area).mean() < 4.0  # the same picture, as an area downscale


def test_the_train_pipeline_reads_big_photos_reduced_and_small_ones_whole(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "wsol"
    make_wsol_folder(root, n_train=2, n_test=2, size=32)
    ids = (root / "metadata" / "train" / "image_ids.txt").read_text().split()
    source = D.get_source(str(root))
    before = [x.numpy() for x, _ in D.make_train_dataset(source, 16, 1, seed=0, shuffle=False,
                                                           mean=(0, 0, 0), std=(1, 1, 1))]
    big = cv2.resize(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8), (1800, 1200))
    cv2.imwrite(str(root / "images" / ids[0]), big)  # PNG name, PNG bytes: decoded whole
    meta = root / "metadata" / "train"
    for name in ("image_sizes.txt",):
        (meta / name).write_text((meta / name).read_text().replace(
            f"{ids[0]},32,32", f"{ids[0]},1800,1200"))
    jpg = ids[0][:-4] + ".jpg"
    (root / "images" / ids[0]).unlink()
    cv2.imwrite(str(root / "images" / jpg), big)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        (meta / name).write_text((meta / name).read_text().replace(ids[0], jpg))
    source = D.get_source(str(root))
    read = next(iter(source.load("train", decode_min_side=2 * 18)))
    assert tuple(read["image"].shape) == (150, 225, 3)  # 1/8: 150 >= 36
    np.testing.assert_allclose(read["boxes"].numpy(), source.split_metadata("train").boxes(0) / 8)
    after = [x.numpy() for x, _ in D.make_train_dataset(source, 16, 1, seed=0, shuffle=False,
                                                          mean=(0, 0, 0), std=(1, 1, 1))]
    assert after[0].shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(after[1], before[1])  # a small image: read as before
