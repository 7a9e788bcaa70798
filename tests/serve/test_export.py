"""Tests for keras_has.serve.signatures and keras_has.serve.export: the serving signatures (bad inputs
marked per image), the export's assets and atomicity, settings from a run folder."""
import base64
import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_has.serve import export
from keras_has.train import run_folder
from keras_has.serve import signatures as serving
from keras_has.models import get_model

IMAGE_SIZE = 32
MEAN = (120.0, 110.0, 100.0)
STD = (60.0, 55.0, 50.0)
CLASS_NAMES = ("cat", "dog", "bird")
THRESHOLD = 0.7  # high enough that the random tiny model gives boxes smaller than the image
PYTHON = sys.executable
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


# ---------------------------------------------------------------------------
# The serving signatures, on a tiny model and tiny images.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    # 32x32 input, one 2x2 pooling: 16x16 CAMs.
    return get_model("tiny_gap", num_classes=3, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                     widths=(8, 16), seed=0)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "localizer"
    export.export_saved_model(
        model, path, image_size=IMAGE_SIZE, mean=MEAN, std=STD, class_names=CLASS_NAMES,
        cam_threshold=THRESHOLD, top_k=2, config={"model": "tiny_gap", "epochs": 1},
    )
    return path


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(str(export_dir))


def smooth_image(seed, height, width):
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)


def encode(image, ext=".png"):
    """RGB (or gray / RGBA) array -> encoded bytes."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[:, :, ::-1]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, [2, 1, 0, 3]]
    ok, data = cv2.imencode(ext, np.ascontiguousarray(image))
    assert ok
    return data.tobytes()


def run_bytes(loaded, blobs):
    out = loaded.signatures["serving_default"](images_bytes=tf.constant(blobs, tf.string))
    return {k: v.numpy() for k, v in out.items()}


def run_images(loaded, images):
    out = loaded.signatures["serving_images"](images=tf.constant(images, tf.uint8))
    return {k: v.numpy() for k, v in out.items()}


def expected_model_frame_boxes(cams, threshold=THRESHOLD):
    """The library's rule on the exported CAMs: resize_cams, normalize_cams, boxes_from_cams."""
    from keras_has.localize import boxes as localization

    maps = localization.normalize_cams(localization.resize_cams(cams, (IMAGE_SIZE, IMAGE_SIZE)))
    return np.asarray(localization.boxes_from_cams(maps, threshold))


def to_input_frame(box, height, width):
    """Inclusive model-frame box -> input image frame, computed by hand in Python ints."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return [
        x0 * width // IMAGE_SIZE,
        y0 * height // IMAGE_SIZE,
        -(-(x1 + 1) * width // IMAGE_SIZE) - 1,
        -(-(y1 + 1) * height // IMAGE_SIZE) - 1,
    ]


def test_signatures_and_names(loaded):
    assert set(loaded.signatures) == {"serving_default", "serving_images", "cam_features",
                                      "cams_for_labels"}
    default = loaded.signatures["serving_default"]
    assert set(default.structured_input_signature[1]) == {"images_bytes"}
    assert default.structured_input_signature[1]["images_bytes"].dtype == tf.string
    images = loaded.signatures["serving_images"].structured_input_signature[1]["images"]
    assert images.dtype == tf.uint8 and images.shape.as_list() == [None, None, None, 3]
    assert set(default.structured_outputs) == set(serving.OUTPUT_KEYS)


def test_outputs_match_the_keras_model(model, loaded):
    from keras_has.localize.cams import compute_cams

    images = np.stack([smooth_image(s, IMAGE_SIZE, IMAGE_SIZE) for s in range(3)])
    out = run_images(loaded, images)
    # Independent preprocessing: the images are already 32x32, so only normalisation.
    x = (images.astype(np.float32) - np.float32(MEAN)) / np.float32(STD)
    logits = np.asarray(model(x, training=False), np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    order = np.argsort(-probs, axis=1)[:, :2]
    np.testing.assert_array_equal(out["classes"], order)
    np.testing.assert_allclose(out["scores"], np.take_along_axis(probs, order, 1), atol=1e-5)
    assert out["class_names"].tolist() == [[CLASS_NAMES[c].encode() for c in row] for row in order]
    cams = np.asarray(compute_cams(model, x, order[:, 0]))
    assert out["cams"].shape == (3, 16, 16)
    np.testing.assert_allclose(out["cams"], cams, rtol=1e-4, atol=1e-4)
    boxes = expected_model_frame_boxes(out["cams"])
    # Boxes smaller than the image, so the box checks are not trivial.
    assert len({tuple(b) for b in boxes.tolist()} - {(0, 0, 31, 31)}) >= 2
    np.testing.assert_array_equal(out["boxes"], boxes)  # input frame == model frame here
    edges = np.concatenate([boxes[:, :2], boxes[:, 2:] + 1], 1) / IMAGE_SIZE
    np.testing.assert_allclose(out["boxes_normalized"], edges, atol=1e-6)
    np.testing.assert_array_equal(out["image_sizes"], [[IMAGE_SIZE, IMAGE_SIZE]] * 3)


def test_preprocessing_matches_the_eval_pipeline():
    from keras_has.data import pipeline

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for image in (smooth_image(5, 45, 71), noise):
        ours = serving.resize_images(image, (IMAGE_SIZE, IMAGE_SIZE)).numpy()
        theirs = pipeline.resize_image(image, IMAGE_SIZE).numpy()
        np.testing.assert_array_equal(ours, theirs)
    batch = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    same_size = serving.resize_images(batch, (20, 30)).numpy()
    np.testing.assert_array_equal(same_size, batch.astype(np.float32))


def test_bytes_any_size_boxes_in_each_image_frame(loaded):
    sizes = [(48, 64), (20, 90), (32, 32)]
    images = [smooth_image(10 + i, h, w) for i, (h, w) in enumerate(sizes)]
    out = run_bytes(loaded, [encode(im) for im in images])  # PNG: lossless
    np.testing.assert_array_equal(out["image_sizes"], sizes)
    model_boxes = expected_model_frame_boxes(out["cams"])
    full = [[0, 0, w - 1, h - 1] for h, w in sizes]
    assert all(box != whole for box, whole in zip(out["boxes"].tolist(), full))  # not trivial
    for i, (h, w) in enumerate(sizes):
        assert out["boxes"][i].tolist() == to_input_frame(model_boxes[i], h, w)
        # The same answer as one image alone through the uint8 signature.
        alone = run_images(loaded, images[i][None])
        for key in ("classes", "boxes", "image_sizes", "class_names"):
            np.testing.assert_array_equal(alone[key][0], out[key][i])
        np.testing.assert_allclose(alone["cams"][0], out["cams"][i], atol=1e-5)


def test_rest_request_body_as_tf_serving_decodes_it(loaded):
    images = [smooth_image(20, 40, 30), smooth_image(21, 24, 36)]
    blobs = [encode(images[0], ".jpg"), b"not an image", encode(images[1], ".jpg")]
    body = json.dumps({"instances": [
        {"images_bytes": {"b64": base64.b64encode(blob).decode("ascii")}} for blob in blobs
    ]})
    # TF Serving's row format: each instance maps input names to values, {"b64": ...}
    # is binary data for a string tensor, and instances stack along the batch axis.
    request = json.loads(body)
    signature = loaded.signatures["serving_default"]
    names = set(signature.structured_input_signature[1])
    columns = {name: [] for name in names}
    for instance in request["instances"]:
        assert set(instance) == names
        for name, value in instance.items():
            is_binary = isinstance(value, dict)
            columns[name].append(base64.b64decode(value["b64"]) if is_binary else value)
    outputs = signature(**{name: tf.constant(values) for name, values in columns.items()})
    # The response lists one prediction per instance, in order, with every output.
    predictions = [{k: np.asarray(v.numpy()[i]).tolist() for k, v in outputs.items()}
                   for i in range(len(blobs))]
    response = json.loads(json.dumps({"predictions": predictions},
                                     default=lambda b: b.decode()))  # strings -> JSON strings
    answered = response["predictions"]
    assert [p["valid"] for p in answered] == [True, False, True]
    assert answered[1]["error"].startswith("not an image") and answered[0]["error"] == ""
    assert answered[1]["boxes"] == [0, 0, 0, 0] and answered[1]["class_names"] == ["", ""]
    direct = run_bytes(loaded, [blobs[0], blobs[2]])
    for i, j in ((0, 0), (2, 1)):
        assert answered[i]["boxes"] == direct["boxes"][j].tolist()
        assert answered[i]["image_sizes"] == list(images[j].shape[:2])
        assert answered[i]["class_names"][0] in CLASS_NAMES
    # The uint8 signature takes nested lists per instance.
    rows = {"instances": [{"images": images[0].tolist()}]}
    instances = json.loads(json.dumps(rows))["instances"]
    pixels = tf.constant([instance["images"] for instance in instances], tf.uint8)
    out = loaded.signatures["serving_images"](images=pixels)
    assert out["image_sizes"].numpy().tolist() == [[40, 30]]


def test_empty_batch(loaded):
    out = run_bytes(loaded, np.zeros([0], object).astype(bytes))
    assert out["boxes"].shape == (0, 4) and out["classes"].shape == (0, 2)
    out = run_images(loaded, np.zeros([0, 5, 5, 3], np.uint8))
    assert out["boxes"].shape == (0, 4) and out["cams"].shape == (0, 16, 16)


# ---------------------------------------------------------------------------
# Bad input: a clear InvalidArgument error or a correct answer, and the model keeps serving.
# ---------------------------------------------------------------------------


def patch_png_size(png, height, width):
    """A PNG whose IHDR claims another size (the CRC no longer matches: never decoded)."""
    data = bytearray(png)
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def patch_jpeg_size(jpeg, height, width):
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


BAD_CASES = ["not_an_image", "empty", "gif", "truncated_jpeg_header", "truncated_jpeg_body",
             "png_bad_pixels", "png_claims_huge", "jpeg_claims_huge"]


def bad_blob(case):
    """A bad input of serving_default and the start of the reason it must be given."""
    good_png = encode(smooth_image(1, 16, 16))
    good_jpeg = encode(smooth_image(1, 16, 16), ".jpg")
    return {
        "not_an_image": (b"hello, this is not an image", "not an image"),
        "empty": (b"", "not an image"),
        "gif": (b"GIF89a" + bytes(40), "not an image"),
        "truncated_jpeg_header": (good_jpeg[:20], "cannot be decoded"),
        "truncated_jpeg_body": (good_jpeg[:len(good_jpeg) // 2], "cannot be decoded"),
        "png_bad_pixels": (good_png[:40] + b"\x00" * (len(good_png) - 40), "cannot be decoded"),
        "png_claims_huge": (patch_png_size(good_png, 100_000, 100_000), "too large"),
        "jpeg_claims_huge": (patch_jpeg_size(good_jpeg, 60_000, 60_000), "too large"),
    }[case]


def assert_same_answer(batch_out, i, alone_out, j=0):
    for key in ("classes", "class_names", "boxes", "image_sizes"):
        np.testing.assert_array_equal(batch_out[key][i], alone_out[key][j], err_msg=key)
    for key in ("scores", "boxes_normalized", "cams"):
        np.testing.assert_allclose(batch_out[key][i], alone_out[key][j], atol=1e-5, err_msg=key)


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_image_is_marked_and_the_rest_answered(loaded, case):
    good_png = encode(smooth_image(1, 16, 16))
    good_jpeg = encode(smooth_image(2, 40, 30), ".jpg")
    blob, reason = bad_blob(case)
    out = run_bytes(loaded, [good_png, blob, good_jpeg])
    assert out["valid"].tolist() == [True, False, True]
    assert out["error"][0] == b"" and out["error"][2] == b""
    assert out["error"][1].decode().startswith(reason), out["error"][1]
    # The bad one: zeros (classes -1, no names); the good ones: as if each came alone.
    assert out["classes"][1].tolist() == [-1, -1] and out["class_names"][1].tolist() == [b"", b""]
    assert not out["scores"][1].any() and not out["boxes"][1].any()
    assert not out["boxes_normalized"][1].any() and not out["cams"][1].any()
    assert out["image_sizes"][1].tolist() == [0, 0]
    assert_same_answer(out, 0, run_bytes(loaded, [good_png]))
    assert_same_answer(out, 2, run_bytes(loaded, [good_jpeg]))


def test_mixed_batch_of_several_bad_images(loaded):
    goods = [encode(smooth_image(s, 20 + s, 30), ".jpg" if s % 2 else ".png") for s in range(3)]
    bads = [bad_blob(c)[0] for c in ("gif", "truncated_jpeg_body", "png_claims_huge")]
    batch = [bads[0], goods[0], bads[1], bads[2], goods[1], goods[2]]
    out = run_bytes(loaded, batch)
    assert out["valid"].tolist() == [False, True, False, False, True, True]
    assert [e.decode().split(":")[0] for e in out["error"]] == [
        "not an image", "", "cannot be decoded", "too large", "", ""]
    alone = run_bytes(loaded, goods)
    for i, j in ((1, 0), (4, 1), (5, 2)):
        assert_same_answer(out, i, alone, j)
    only_bad = run_bytes(loaded, bads)
    assert only_bad["valid"].tolist() == [False] * 3 and only_bad["classes"].shape == (3, 2)


def test_corrupt_jpeg_body_is_answered_or_marked(loaded):
    jpeg = bytearray(encode(smooth_image(2, 64, 64), ".jpg"))
    rng = np.random.default_rng(0)
    start = len(jpeg) // 2
    jpeg[start:start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    out = run_bytes(loaded, [bytes(jpeg)])
    if not out["valid"][0]:  # libjpeg may reject it or decode it with artefacts
        assert out["error"][0].startswith(b"cannot be decoded")
        return
    assert out["image_sizes"].tolist() == [[64, 64]]
    expected = to_input_frame(expected_model_frame_boxes(out["cams"])[0], 64, 64)
    assert out["boxes"][0].tolist() == expected


def test_gray_and_rgba_pngs_are_read_as_rgb(loaded):
    rgb = smooth_image(3, 24, 40)
    gray = rgb[:, :, 1]
    rgba = np.concatenate([rgb, np.full((24, 40, 1), 77, np.uint8)], axis=2)
    out = run_bytes(loaded, [encode(gray), encode(rgba), encode(rgb)])
    as_gray_rgb = run_images(loaded, np.repeat(gray[None, :, :, None], 3, axis=3))
    as_rgb = run_images(loaded, rgb[None])
    for i, reference in ((0, as_gray_rgb), (1, as_rgb), (2, as_rgb)):
        for key in ("classes", "boxes", "image_sizes"):
            np.testing.assert_array_equal(out[key][i], reference[key][0])
        np.testing.assert_allclose(out["cams"][i], reference["cams"][0], atol=1e-5)


def test_one_pixel_and_very_large_images(loaded):
    tiny = np.array([[[200, 30, 90]]], np.uint8)
    large = smooth_image(4, 3000, 4000)
    out = run_bytes(loaded, [encode(tiny), encode(large, ".jpg")])
    np.testing.assert_array_equal(out["image_sizes"], [[1, 1], [3000, 4000]])
    assert out["boxes"][0].tolist() == [0, 0, 0, 0]  # the only pixel
    model_boxes = expected_model_frame_boxes(out["cams"])
    assert out["boxes"][1].tolist() == to_input_frame(model_boxes[1], 3000, 4000)
    x0, y0, x1, y1 = out["boxes"][1]
    assert 0 <= x0 <= x1 <= 3999 and 0 <= y0 <= y1 <= 2999
    scores = out["scores"]
    assert np.all(scores[:, 0] >= scores[:, 1]) and np.all(scores.sum(1) <= 1 + 1e-6)


def test_max_image_pixels_is_enforced_before_decoding(model):
    config = serving.make_serving_config(model, image_size=IMAGE_SIZE, mean=MEAN, std=STD,
                                        max_image_pixels=1000)
    functions = serving.ServingFunctions(model, config)
    ok = functions.serving_default(tf.constant([encode(smooth_image(0, 20, 50))]))
    assert ok["image_sizes"].numpy().tolist() == [[20, 50]]
    over = functions.serving_default(tf.constant([encode(smooth_image(0, 20, 51), ".jpg")]))
    assert over["valid"].numpy().tolist() == [False]
    assert over["error"].numpy()[0] == b"too large: expected an image of at most 1000 pixels"


def test_no_foreground_gives_zero_boxes_in_every_frame(model):
    # Threshold 1: no pixel is above the maximum, so no region at all.
    config = serving.make_serving_config(model, image_size=IMAGE_SIZE, mean=MEAN, std=STD,
                                        cam_threshold=1.0)
    out = serving.ServingFunctions(model, config).serving_images(
        tf.constant(smooth_image(6, 70, 90)[None]))
    assert out["boxes"].numpy().tolist() == [[0, 0, 0, 0]]
    assert out["boxes_normalized"].numpy().tolist() == [[0, 0, 0, 0]]


def test_bad_uint8_batches(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="images"):
        run_images(loaded, np.zeros([1, 0, 5, 3], np.uint8))
    out = run_images(loaded, np.full([2, 1, 1, 3], 128, np.uint8))
    assert out["boxes"].tolist() == [[0, 0, 0, 0]] * 2


# ---------------------------------------------------------------------------
# The export itself: assets, atomicity, argument checks.
# ---------------------------------------------------------------------------


def test_assets(export_dir):
    assets = export_dir / "assets"
    assert (assets / "class_names.txt").read_text().splitlines() == list(CLASS_NAMES)
    prep = json.loads((assets / "preprocessing.json").read_text())
    assert prep["image_size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert prep["mean"] == list(MEAN) and prep["std"] == list(STD)
    assert prep["cam_threshold"] == THRESHOLD and prep["top_k"] == 2
    training_config = json.loads((assets / "training_config.json").read_text())
    assert training_config == {"model": "tiny_gap", "epochs": 1}
    leftovers = [p for p in export_dir.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers  # no temporary directories left


def test_overwrite_never_replaces_a_file_or_a_foreign_folder(model, tmp_path):
    kwargs = dict(image_size=IMAGE_SIZE, mean=MEAN, std=STD, overwrite=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(FileExistsError, match="is a file, which overwrite=True never replaces.*notes.txt"):
        export.export_saved_model(model, notes, **kwargs)
    assert notes.read_text() == "my notes"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(FileExistsError, match="no saved_model.pb.*photos"):
        export.export_saved_model(model, foreign, **kwargs)
    assert [p.name for p in foreign.iterdir()] == ["a.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    export.export_saved_model(model, empty, **kwargs)  # an empty folder may be used
    assert (empty / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt", "photos"]


def test_existing_dir_overwrite_and_failed_export(model, tmp_path, monkeypatch):
    target = tmp_path / "out"
    kwargs = dict(image_size=IMAGE_SIZE, mean=MEAN, std=STD)
    export.export_saved_model(model, target, class_names=("x", "y", "z"), **kwargs)
    (target / "old.txt").write_text("old")  # an earlier export, with a file added
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_saved_model(model, target, **kwargs)
    assert (target / "old.txt").exists()
    export.export_saved_model(model, target, overwrite=True, **kwargs)
    assert not (target / "old.txt").exists() and (target / "saved_model.pb").exists()
    assert (target / "assets" / "class_names.txt").read_text().splitlines() == ["0", "1", "2"]
    assert not (target / "assets" / "training_config.json").exists()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.export_saved_model(model, target, overwrite=True, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing half-written
    assert (target / "saved_model.pb").exists()  # the previous export is intact


@pytest.mark.parametrize("kwargs, message", [
    (dict(class_names=("a", "b")), "class_names: expected 3 names"),
    (dict(std=(1.0, 0.0, 1.0)), "std: expected 3 positive"),
    (dict(mean=(1.0, 2.0)), "mean: expected 3"),
    (dict(image_size=(32, 48)), "image_size: the model takes inputs of size"),
    (dict(image_size=0), "image_size: expected positive"),
    (dict(cam_threshold=1.5), "cam_threshold: expected a fraction"),
    (dict(top_k=0), "top_k: expected a positive int"),
    (dict(config=[1, 2]), "config: expected a dict or a dataclass"),
])
def test_bad_arguments_named_before_any_work(model, tmp_path, kwargs, message):
    args = dict(image_size=IMAGE_SIZE, mean=MEAN, std=STD)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        export.export_saved_model(model, tmp_path / "x", **args)
    assert list(tmp_path.iterdir()) == []


def test_rejects_cam_on_a_head_without_global_pooling(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    flat = keras.layers.Flatten()(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(2)(flat))
    with pytest.raises(ValueError, match="no \\[B, h, w, C\\] feature map .*Flatten.*no "
                                         "layer with a \\[B, h, w, C\\] output"):
        export.export_saved_model(plain, tmp_path / "x", image_size=8, mean=MEAN, std=STD)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------
# Outside this process: plain TensorFlow without keras_has or Keras, and saved_model_cli.
# ---------------------------------------------------------------------------

FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    sys.modules["keras_has"] = None  # any import of keras_has or Keras now fails
    sys.modules["keras"] = None
    import numpy as np
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    data = tf.io.read_file(sys.argv[2])
    by_bytes = model.signatures["serving_default"](images_bytes=tf.stack([data]))
    pixels = tf.io.decode_image(data, channels=3, expand_animations=False)[None]
    by_pixels = model.signatures["serving_images"](images=pixels)
    print(json.dumps({
        "bytes": {k: v.numpy().tolist() for k, v in by_bytes.items()
                  if k not in ("class_names", "error")},
        "pixels_boxes": by_pixels["boxes"].numpy().tolist(),
        "class_names": [[s.decode() for s in row] for row in by_bytes["class_names"].numpy()],
        "keras_has_loaded": any(m.startswith("keras_has") and sys.modules[m] is not None
                                for m in sys.modules),
    }))
""")


def test_loads_without_keras_has_and_runs_under_saved_model_cli(export_dir, loaded, tmp_path):
    image = smooth_image(30, 45, 60)
    jpeg_path = tmp_path / "real.jpg"
    jpeg_path.write_bytes(encode(image, ".jpg"))
    expected = run_bytes(loaded, [jpeg_path.read_bytes()])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.array([jpeg_path.read_bytes()], dtype=object), allow_pickle=True)
    commands = {
        "fresh": [PYTHON, str(script), str(export_dir), str(jpeg_path)],
        "show": [SAVED_MODEL_CLI, "show", "--all", "--dir", str(export_dir)],
        "run": [SAVED_MODEL_CLI, "run", "--dir", str(export_dir), "--tag_set", "serve",
                "--signature_def", "serving_default", "--inputs", f"images_bytes={inputs}"],
    }
    # Three TensorFlow start-ups: run them side by side.
    processes = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=tmp_path)
        for name, cmd in commands.items()
    }
    outputs = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, (name, stderr[-2000:])
        outputs[name] = stdout

    result = json.loads(outputs["fresh"].strip().splitlines()[-1])
    assert result["keras_has_loaded"] is False
    assert result["bytes"]["boxes"] == expected["boxes"].tolist()
    assert result["pixels_boxes"] == expected["boxes"].tolist()
    assert result["bytes"]["image_sizes"] == [[45, 60]] and result["bytes"]["valid"] == [True]
    assert result["class_names"] == [[CLASS_NAMES[c] for c in expected["classes"][0]]]
    np.testing.assert_allclose(result["bytes"]["cams"], expected["cams"], atol=1e-5)

    for needle in ("signature_def['serving_default']", "inputs['images_bytes']", "DT_STRING",
                   "signature_def['serving_images']", "inputs['images']", "DT_UINT8",
                   "outputs['boxes']"):
        assert needle in outputs["show"]

    printed = outputs["run"].split("Result for output key boxes:")[1].split("Result for")[0]
    numbers = printed.replace("[", " ").replace("]", " ").split()
    assert [int(v) for v in numbers] == expected["boxes"][0].tolist()


# ---------------------------------------------------------------------------
# Settings for an export, from flags or from a training run.
# ---------------------------------------------------------------------------


def write_uniform_wsol_folder(root):
    """Two 8x8 training images of one colour each: mean (20, 30, 40), std (10, 10, 10)."""
    (root / "metadata" / "train").mkdir(parents=True)
    (root / "images").mkdir()
    rows = []
    for i, colour in enumerate([(10, 20, 30), (30, 40, 50)]):
        cv2.imwrite(str(root / "images" / f"{i}.png"), np.full((8, 8, 3), colour[::-1], np.uint8))
        rows.append(f"{i}.png")
    meta = root / "metadata" / "train"
    (meta / "image_ids.txt").write_text("".join(f"{r}\n" for r in rows))
    (meta / "class_labels.txt").write_text("".join(f"{r},{i}\n" for i, r in enumerate(rows)))
    (meta / "image_sizes.txt").write_text("".join(f"{r},8,8\n" for r in rows))
    (meta / "localization.txt").write_text("".join(f"{r},1,1,6,6\n" for r in rows))
    (root / "class_names.txt").write_text("red\nblue\n")
    return root


def test_read_run_settings_without_records(tmp_path):
    folder = write_uniform_wsol_folder(tmp_path / "data")
    config = {"data": {"image_size": 48, "source": str(folder), "train_split": "train"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    got = run_folder.read_run_settings(train_config=tmp_path / "config.json")
    assert got["image_size"] == 48 and got["config"] == config
    np.testing.assert_allclose(got["mean"], (20, 30, 40), atol=1e-3)
    np.testing.assert_allclose(got["std"], (10, 10, 10), atol=1e-3)
    assert got["class_names"] == ("red", "blue")
    # Explicit values win.
    (tmp_path / "names.txt").write_text("a\nb\n\n")
    got = run_folder.read_run_settings(train_config=config, image_size=64, mean=(1, 2, 3),
                                          std=(4, 5, 6), class_names=tmp_path / "names.txt")
    assert (got["image_size"], got["mean"], got["std"]) == (64, (1, 2, 3), (4, 5, 6))
    assert got["class_names"] == ("a", "b")
    with pytest.raises(ValueError, match="image_size: not given"):
        run_folder.read_run_settings(mean=(1, 2, 3), std=(1, 1, 1))
    with pytest.raises(ValueError, match="mean/std: not given"):
        run_folder.read_run_settings(image_size=32)
    with pytest.raises(ValueError, match="mean/std: expected both"):
        run_folder.read_run_settings(image_size=32, mean=(1, 2, 3))
    (tmp_path / "gappy.txt").write_text("a\n\nb\n")
    with pytest.raises(ValueError, match=r"gappy.txt: expected one non-empty class name.*\[2\]"):
        run_folder.read_run_settings(image_size=32, mean=(1, 2, 3), std=(1, 1, 1),
                                        class_names=tmp_path / "gappy.txt")
    with pytest.raises(ValueError, match="mean: expected 3"):
        run_folder.read_run_settings(image_size=32, mean=("1", "2", "x"), std=(1, 1, 1))
    with pytest.raises(ValueError, match="train_config: cannot read"):
        run_folder.read_run_settings(train_config=tmp_path / "missing.json")


def test_mixed_precision_model_serves_float32():
    model = get_model("tiny_gap", num_classes=3, input_shape=(16, 16, 3), widths=(4, 8),
                      dtype_policy="mixed_bfloat16", seed=1)
    config = serving.make_serving_config(model, image_size=16, mean=MEAN, std=STD)
    functions = serving.ServingFunctions(model, config)
    out = functions.serving_images(tf.constant(smooth_image(9, 20, 24)[None]))
    assert out["scores"].dtype == tf.float32 and out["cams"].dtype == tf.float32
    assert np.all(np.isfinite(out["cams"].numpy())) and out["cams"].shape == (1, 8, 8)
    from keras_has.localize import boxes as localization

    maps = localization.normalize_cams(localization.resize_cams(out["cams"].numpy(), (16, 16)))
    box = np.asarray(localization.boxes_from_cams(maps, THRESHOLD))[0]
    x0, y0, x1, y1 = (int(v) for v in box)  # 16x16 frame -> the 24-wide, 20-high image
    expected = [x0 * 24 // 16, y0 * 20 // 16,
                -(-(x1 + 1) * 24 // 16) - 1, -(-(y1 + 1) * 20 // 16) - 1]
    assert out["boxes"].numpy()[0].tolist() == expected


def test_read_run_settings_reads_the_runs_records_not_the_data(model, tmp_path):
    """A run folder's preprocessing.json and class_names.txt are read; the data source in
    its config.json is never opened (it does not even exist here)."""
    from keras_has.data.preprocessing import make_preprocessing

    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    config = {"data": {"image_size": IMAGE_SIZE, "source": str(tmp_path / "gone"),
                       "train_split": "train"}}
    (run / "config.json").write_text(json.dumps(config))
    recorded = make_preprocessing("dataset", (11.0, 22.0, 33.0), (4.0, 5.0, 6.0))
    run_folder.write_preprocessing(run, recorded, recorded.mean, recorded.std, "train")
    run_folder.write_class_names(run, CLASS_NAMES)
    got = run_folder.read_run_settings(model_path=run / "model.keras")
    assert got["preprocessing"] == recorded and got["class_names"] == CLASS_NAMES
    assert (got["image_size"], got["config"], got["run_dir"]) == (IMAGE_SIZE, config, str(run))
    # normalization.json alone (older runs) gives dataset statistics.
    (run / "preprocessing.json").unlink()
    assert run_folder.read_run_settings(model_path=run / "model.keras")["preprocessing"] == recorded
    # A checkpoint under checkpoints/ belongs to the run above it.
    (run / "checkpoints").mkdir()
    assert run_folder.find_run_folder(run / "checkpoints" / "epoch_001.weights.h5") == str(run)
    # Explicit values win.
    got = run_folder.read_run_settings(model_path=run / "model.keras", mean=(1, 2, 3),
                                       std=(1, 1, 1), class_names=["a", "b", "c"])
    assert got["mean"] == (1, 2, 3) and got["class_names"] == ("a", "b", "c")
