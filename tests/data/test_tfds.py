"""TFDS sources under tfds.testing.mock_data, and the synthetic wrapper on a stand-in builder."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_has import data as D
from keras_has.data import tfds_sources
from tests.helpers import jpeg_with_thumbnail

NO_NORM = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.fixture(autouse=True)
def mock_boxes_in_order(monkeypatch):
    """TFDS's mock data draws box corners in any order. keras_has reads images undecoded
    (it checks them before decoding), and with a decoder the mock encodes its examples,
    which BBoxFeature refuses for such boxes: put the corners in order first."""
    encode = tfds.features.BBoxFeature.encode_example

    def in_order(self, bbox):
        ymin, xmin, ymax, xmax = (float(v) for v in np.asarray(bbox, np.float64).reshape(4))
        return encode(self, tfds.features.BBox(min(ymin, ymax), min(xmin, xmax),
                                               max(ymin, ymax), max(xmin, xmax)))

    monkeypatch.setattr(tfds.features.BBoxFeature, "encode_example", in_order)


def _pixel_boxes(bbox, h, w):
    """Independent reference: TFDS (ymin, xmin, ymax, xmax) -> inclusive pixels."""
    bbox = np.asarray(bbox, np.float64).reshape(-1, 4)
    ymin, ymax = np.minimum(bbox[:, 0], bbox[:, 2]), np.maximum(bbox[:, 0], bbox[:, 2])
    xmin, xmax = np.minimum(bbox[:, 1], bbox[:, 3]), np.maximum(bbox[:, 1], bbox[:, 3])
    x0 = np.clip(np.floor(xmin * w), 0, w - 1)
    y0 = np.clip(np.floor(ymin * h), 0, h - 1)
    x1 = np.maximum(np.clip(np.ceil(xmax * w) - 1, 0, w - 1), x0)
    y1 = np.maximum(np.clip(np.ceil(ymax * h) - 1, 0, h - 1), y0)
    return np.stack([x0, y0, x1, y1], 1)


def test_normalized_to_pixel_boxes_hand_computed():
    # 10 (h) x 20 (w): x span [0.1*20, 0.55*20) = [2, 11) -> pixels 2..10; y [0.2*10, 1.0*10) -> 2..9.
    out = tfds_sources.normalized_to_pixel_boxes([[0.2, 0.1, 1.0, 0.55]], 10, 20).numpy()
    np.testing.assert_array_equal(out, [[2, 2, 10, 9]])


def _raw(name, split, data_dir):
    builder = tfds.builder(name, data_dir=data_dir)
    return list(builder.as_dataset(split=split).as_numpy_iterator())


@pytest.mark.parametrize("name, box_key, id_key", [
    ("caltech_birds2011", "bbox", "image/filename"),
    ("stanford_dogs", "objects", "image/filename"),
])
def test_box_datasets_under_mock_data(tmp_path, name, box_key, id_key):
    with tfds.testing.mock_data(num_examples=3):
        source = D.get_source(name, data_dir=str(tmp_path))
        assert source.num_classes == {"caltech_birds2011": 200, "stanford_dogs": 120}[name]
        assert len(source.class_names) == source.num_classes
        assert set(source.splits) == {"train", "test"}
        raw = _raw(name, "test", str(tmp_path))
        got = list(source.load("test").as_numpy_iterator())
        assert len(got) == 3
        for ex, ref in zip(got, raw):
            h, w = ref["image"].shape[:2]
            bbox = ref["bbox"] if box_key == "bbox" else ref["objects"]["bbox"]
            np.testing.assert_array_equal(ex["image"], ref["image"])
            assert ex["label"] == ref["label"] and ex["label"].dtype == np.int32
            assert ex["image_id"] == ref[id_key]
            np.testing.assert_array_equal(ex["boxes"], _pixel_boxes(bbox, h, w))
        if name == "stanford_dogs":
            assert max(len(ex["boxes"]) for ex in got) > 1  # several boxes per image
            batch = next(iter(D.make_eval_dataset(source, 16, 3, split="test", **NO_NORM)))
            np.testing.assert_array_equal(batch["num_boxes"].numpy(), [len(e["boxes"]) for e in got])
            assert batch["boxes"].shape[1] == max(len(e["boxes"]) for e in got)
            first = batch["boxes"][0, :len(got[0]["boxes"])].numpy()
            h, w = got[0]["image"].shape[:2]
            expected = np.floor(got[0]["boxes"] * [16 / w, 16 / h, 16 / w, 16 / h])
            np.testing.assert_array_equal(first, expected)
        x, y = next(iter(D.make_train_dataset(source, 16, 2, seed=0, hiding={"grid_sizes": (4,), "hide_prob": 0.5},
                                              **NO_NORM)))
        assert x.shape == (2, 16, 16, 3) and y.dtype == tf.int32


def test_oxford_pet_whole_body_box_from_trimap(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        source = D.get_source("oxford_iiit_pet", data_dir=str(tmp_path))
        assert source.num_classes == 37 and source.has_masks("test")
        raw = _raw("oxford_iiit_pet", "test", str(tmp_path))
        got = list(source.load("test").as_numpy_iterator())
        heads = list(D.get_source("oxford_iiit_pet", data_dir=str(tmp_path), boxes="part")
                     .load("test").as_numpy_iterator())
        from_source = list(source.part_box_source().load("test").as_numpy_iterator())
        assert [e["boxes"].tolist() for e in heads] == [e["boxes"].tolist() for e in from_source]
        for ex, head, ref in zip(got, heads, raw):
            h, w = ref["image"].shape[:2]
            assert ex["mask"].shape == (h, w) and ex["ignore"].shape == (h, w)
            # Nearest resize of the trimap to the image (TF's half-pixel-centre rule).
            trimap = ref["segmentation_mask"][:, :, 0]
            rows = np.minimum(((np.arange(h) + 0.5) * trimap.shape[0] / h).astype(int), trimap.shape[0] - 1)
            cols = np.minimum(((np.arange(w) + 0.5) * trimap.shape[1] / w).astype(int), trimap.shape[1] - 1)
            resized = trimap[rows][:, cols]
            np.testing.assert_array_equal(ex["mask"], resized == 1)
            np.testing.assert_array_equal(ex["ignore"], resized == 3)
            body = (resized == 1) | (resized == 3)
            if body.any():
                ys, xs = np.nonzero(body)
                np.testing.assert_array_equal(ex["boxes"], [[xs.min(), ys.min(), xs.max(), ys.max()]])
            else:
                assert ex["boxes"].shape == (0, 4)
            np.testing.assert_array_equal(head["boxes"], _pixel_boxes(ref["head_bbox"], h, w))
        batch = next(iter(D.make_eval_dataset(source, 8, 3, split="test", **NO_NORM)))
        assert batch["mask"].shape == (3, 8, 8) and batch["ignore"].dtype == tf.bool
    with pytest.raises(ValueError, match="`boxes` must be 'object' or 'part'; received 'head'"):
        D.get_source("oxford_iiit_pet", boxes="head")


def test_imagenet_labels_from_tfds_boxes_from_wsol_folder(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        raw = _raw("imagenet2012", "validation", str(tmp_path / "tfds"))
        names = [r["file_name"].decode() for r in raw]
        h, w = raw[0]["image"].shape[:2]
        root = tmp_path / "ilsvrc"
        meta = root / "metadata" / "test"
        meta.mkdir(parents=True)
        first = f"val/{os.path.basename(names[0])}"
        (meta / "image_ids.txt").write_text(f"{first}\n")
        (meta / "class_labels.txt").write_text(f"{first},{raw[0]['label']}\n")
        (meta / "image_sizes.txt").write_text(f"{first},{w},{h}\n")
        (meta / "localization.txt").write_text(f"{first},0,1,{w - 1},{h - 1}\n{first},1,0,{w + 1},1\n")
        source = D.get_source("imagenet2012", data_dir=str(tmp_path / "tfds"), boxes_root=str(root))
        assert source.num_classes == 1000 and set(source.splits) == {"train", "validation"}
        got = list(source.load("validation").as_numpy_iterator())
        np.testing.assert_array_equal(got[0]["boxes"], [[0, 1, w - 1, h - 1], [1, 0, w - 1, 1]])
        assert all(g["boxes"].shape == (0, 4) for g in got[1:] if g["image_id"].decode() != names[0])
        assert [g["label"] for g in got] == [r["label"] for r in raw]
        # Without a boxes folder: labels only; the default statistics are ImageNet's.
        plain = D.get_source("imagenet2012", data_dir=str(tmp_path / "tfds"))
        assert next(iter(plain.load("train")))["boxes"].shape == (0, 4)
        from keras_has.data import stats
        assert stats.default_normalization(plain, "train") == (D.IMAGENET_MEAN, D.IMAGENET_STD)


def test_unprepared_tfds_dataset_says_how_to_prepare(tmp_path):
    source = D.get_source("caltech_birds2011", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not prepared.*download=True"):
        source.load("train")


# ---------------------------------------------------------------------------- synthetic

_S = 16


class StandInSynthetic(tfds.core.GeneratorBasedBuilder):
    """The synthetic builder's feature contract on 16x16 images, 3 classes."""

    VERSION = tfds.core.Version("0.0.1")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # As keras_has.data.synthetic does: TFDS's default needs importlib_resources
        # for a module inside a package (this test module is one).
        from etils import epath

        return epath.Path(__file__)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(_S, _S, 3)),
            "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
            "object_box": tfds.features.Tensor(shape=(4,), dtype=np.int32),
            "part_box": tfds.features.Tensor(shape=(4,), dtype=np.int32),
            "mask": tfds.features.Tensor(shape=(_S, _S, 1), dtype=np.uint8),
            "image_id": tfds.features.Text(),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6, 0), "validation": self._generate_examples(2, 1),
                "test": self._generate_examples(3, 2)}

    def _generate_examples(self, n, offset):
        for i in range(n):
            x0, y0 = 2 + i, 3 + offset
            x1, y1 = x0 + 6, y0 + 8
            image = np.full([_S, _S, 3], 40, np.uint8)
            image[y0:y1 + 1, x0:x1 + 1] = 180
            mask = np.zeros([_S, _S, 1], np.uint8)
            mask[y0:y1 + 1, x0:x1 + 1] = 255
            yield f"{offset}_{i}", {
                "image": image, "label": i % 3,
                "object_box": np.array([x0, y0, x1, y1], np.int32),
                "part_box": np.array([x0, y0, x0 + 1, y0 + 1], np.int32),
                "mask": mask, "image_id": f"s{offset}_{i}",
            }


def test_synthetic_wrapper_on_stand_in_builder(tmp_path):
    builder = StandInSynthetic(data_dir=str(tmp_path))
    source = tfds_sources.SyntheticSource(builder=builder)
    assert source.name == "synthetic" and source.num_classes == 3 and source.class_names == ("a", "b", "c")
    assert set(source.splits) == {"train", "validation", "test"} and source.has_masks("test")
    got = sorted(source.load("test").as_numpy_iterator(), key=lambda e: e["image_id"])
    assert len(got) == 3
    for i, ex in enumerate(got):  # TFDS stores examples in hashed-key order
        box = [2 + i, 5, 8 + i, 13]
        np.testing.assert_array_equal(ex["boxes"], [box])
        ys, xs = np.nonzero(ex["mask"])
        assert [xs.min(), ys.min(), xs.max(), ys.max()] == box  # boxes are the masks' tight boxes
        assert not ex["ignore"].any() and ex["image_id"] == f"s2_{i}".encode()
    part = tfds_sources.SyntheticSource(builder=builder, boxes="part")
    assert source.fixed_normalization is None  # measured, not prescribed
    for part in (part, source.part_box_source()):  # the comparison asks the source
        for ex in part.load("test").as_numpy_iterator():
            i = int(ex["image_id"].decode()[-1])
            np.testing.assert_array_equal(ex["boxes"], [[2 + i, 5, 3 + i, 6]])
    batch = next(iter(D.make_eval_dataset(source, 8, 3, split="test", **NO_NORM)))
    for ids, boxes in zip(batch["image_id"].numpy(), batch["boxes"].numpy()):
        i = int(ids.decode()[-1])
        np.testing.assert_array_equal(boxes, [[(2 + i) // 2, 2, (8 + i) // 2, 6]])  # int(x * 8 / 16)
    assert batch["mask"].shape == (3, 8, 8)
    # Statistics over the train split: 6 images of value 40 with a 7x9 block of 180.
    mean, std = D.get_normalization(source, "train")
    values = np.array([40.0] * (256 - 63) + [180.0] * 63)
    np.testing.assert_allclose(mean, [values.mean()] * 3, rtol=1e-6)
    np.testing.assert_allclose(std, [values.std()] * 3, rtol=1e-5)
    x, y = next(iter(D.make_train_dataset(source, 12, 6, seed=1)))
    assert x.shape == (6, 12, 12, 3)
    np.testing.assert_allclose(float(tf.reduce_mean(x)), 0.0, atol=0.5)  # normalised


def test_real_synthetic_builder_is_registered(tmp_path):
    synthetic = pytest.importorskip("keras_has.data.synthetic")
    config_cls = getattr(synthetic, "SyntheticConfig", None)
    if config_cls is None:
        pytest.skip("keras_has.data.synthetic has no SyntheticConfig yet")
    try:
        config = config_cls(name="tiny_pipeline_test", image_size=64, train_size=4, validation_size=2,
                            test_size=2)
    except TypeError as e:
        pytest.skip(f"SyntheticConfig signature differs: {e}")
    source = D.get_source("synthetic", data_dir=str(tmp_path), config=config)
    assert source.num_classes >= 10
    batch = next(iter(D.make_eval_dataset(source, 32, 2, split="test", **NO_NORM)))
    assert batch["mask"].shape == (2, 32, 32) and (batch["num_boxes"].numpy() == 1).all()


def test_a_truncated_image_is_named_before_it_is_decoded():
    """TFDS images are checked for their end marker (as WSOL folder files are) before
    decoding, so a cut-short file fails naming its id instead of a bare decoder error."""
    import cv2

    from keras_has.data.sources import check_complete_image, decode_image

    image = cv2.resize(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), (24, 20))
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    png = cv2.imencode(".png", image)[1].tobytes()

    def load(pairs):
        ds = tf.data.Dataset.from_tensor_slices(([d for d, _ in pairs], [n for _, n in pairs]))
        return [im.shape for im in ds.map(
            lambda d, n: decode_image(check_complete_image(d, n, "caltech_birds2011")))
            .as_numpy_iterator()]

    # Complete images, one with bytes after its end marker, and a format not checked.
    gif_like = b"GIF89a" + bytes(10)
    assert load([(jpeg, "a.jpg"), (png, "b.png"), (jpeg + b"\x00" * 100, "c.jpg")]) == \
        [(20, 24, 3)] * 3
    assert check_complete_image(tf.constant(gif_like), tf.constant("d.gif"), "x").numpy() == \
        gif_like
    camera = jpeg_with_thumbnail(cv2.resize(image, (96, 80)), image)
    assert load([(camera, "camera.jpg")]) == [(80, 96, 3)]
    cut_camera = camera[:int(len(camera) * 0.8)]  # the thumbnail's end marker survives
    for name, data in (("cut.jpg", jpeg[:len(jpeg) // 2]), ("cut.png", png[:-12]),
                       ("cut_camera.jpg", cut_camera)):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"caltech_birds2011: image.*{name}.*is truncated"):
            load([(jpeg, "fine.jpg"), (data, name)])
