"""Tests for keras_has.export: the in-graph box rule, the serving signatures, the export."""
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

from keras_has import export
from keras_has.models import get_model

IMAGE_SIZE = 32
MEAN = (120.0, 110.0, 100.0)
STD = (60.0, 55.0, 50.0)
CLASS_NAMES = ("cat", "dog", "bird")
THRESHOLD = 0.2
PYTHON = sys.executable
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


# ---------------------------------------------------------------------------
# An independent reference for the single-region rule (docs/architecture.md), on OpenCV.
# ---------------------------------------------------------------------------


def reference_box(cam, threshold):
    """The largest 8-connected region's inclusive box, via cv2.connectedComponentsWithStats."""
    gray = np.floor(cam.astype(np.float64) * 255).astype(np.uint8)
    level = np.floor(threshold * float(gray.max()))
    foreground = (gray > level).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count == 1:
        return (0, 0, 0, 0)
    flat = labels.ravel()
    regions = range(1, count)
    first_pixel = {r: int(np.argmax(flat == r)) for r in regions}
    best = min(regions, key=lambda r: (-stats[r, cv2.CC_STAT_AREA], first_pixel[r]))
    x, y, w, h = (stats[best, k] for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return (int(x), int(y), int(x + w - 1), int(y + h - 1))


def tight_box_of_all(cam, threshold):
    gray = np.floor(cam.astype(np.float64) * 255)
    ys, xs = np.nonzero(gray > np.floor(threshold * gray.max()))
    return (xs.min(), ys.min(), xs.max(), ys.max())


def smooth_map(rng, size, coarse=5):
    low = rng.random((coarse, coarse)).astype(np.float32)
    cam = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    return (cam - cam.min()) / (cam.max() - cam.min())


def serpentine(size):
    """One 8-connected path that sweeps every other row, alternating direction."""
    mask = np.zeros((size, size), np.float32)
    for row in range(0, size, 2):
        mask[row, :] = 1
        if row + 2 < size:
            mask[row + 1, size - 1 if (row // 2) % 2 == 0 else 0] = 1
    return mask


def spiral(size):
    mask = np.zeros((size, size), np.float32)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top + 2 <= bottom and left + 2 <= right:
        mask[top, left:right + 1] = 1
        mask[top:bottom + 1, right] = 1
        mask[bottom, left:right + 1] = 1
        mask[top + 2:bottom + 1, left] = 1
        mask[top + 2, left:left + 3] = 1
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    return mask


def rule_maps():
    """Named [H, W] maps in [0, 1]: smooth, ties, several regions, snakes, corners, empty."""
    rng = np.random.default_rng(7)
    maps = {f"smooth{i}": smooth_map(rng, 40, coarse=3 + i) for i in range(4)}
    ties = np.zeros((20, 30), np.float32)
    ties[2:5, 20:24] = 1.0  # 12 pixels, first pixel (2, 20)
    ties[3:7, 1:4] = 0.9  # 12 pixels, first pixel (3, 1): later in row-major order
    maps["tie_row_major"] = ties
    ties2 = np.zeros((20, 30), np.float32)
    ties2[10:13, 2:6] = 0.7  # 12 pixels, first pixel (10, 2)
    ties2[10:14, 25:28] = 1.0  # 12 pixels, first pixel (10, 25)
    maps["tie_same_row"] = ties2
    multi = np.zeros((30, 30), np.float32)
    multi[2:6, 2:6] = 1.0  # 16 pixels, brightest
    multi[15:27, 10:25] = 0.6  # 180 pixels: the largest
    multi[20:22, 0:3] = 0.5
    maps["multi_region"] = multi
    corners = np.zeros((12, 12), np.float32)
    corners[1:4, 1:4] = 1.0
    corners[4:7, 4:7] = 1.0  # touches the first square only diagonally: one 8-region
    corners[9:11, 0:2] = 1.0
    maps["diagonal_touch"] = corners
    maps["serpentine"] = serpentine(41)
    maps["spiral"] = spiral(37)
    maps["constant"] = np.full((9, 11), 0.5, np.float32)
    maps["single_pixel"] = np.eye(1, 64, 50, dtype=np.float32).reshape(8, 8)
    return maps


def tf_box(cam, threshold):
    return tuple(export.largest_region_boxes(cam[None], threshold).numpy()[0].tolist())


@pytest.mark.parametrize("name, cam", list(rule_maps().items()))
@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.65])
def test_in_graph_box_matches_reference_rule(name, cam, threshold):
    assert tf_box(cam, threshold) == reference_box(cam, threshold)


def test_in_graph_box_matches_boxes_from_cams():
    localization = pytest.importorskip("keras_has.localization")
    maps = rule_maps()
    for threshold in (0.0, 0.2, 0.65):
        for name, cam in maps.items():
            expected = np.asarray(localization.boxes_from_cams(cam[None], threshold)).reshape(-1)
            assert tf_box(cam, threshold) == tuple(int(v) for v in expected[:4]), name


def test_hand_made_boxes():
    maps = rule_maps()
    # Equal areas: the region whose first pixel comes first in row-major order wins.
    assert tf_box(maps["tie_row_major"], 0.2) == (20, 2, 23, 4)
    assert tf_box(maps["tie_same_row"], 0.2) == (2, 10, 5, 12)
    # The largest region, not the brightest, and not a box around every region.
    assert tf_box(maps["multi_region"], 0.2) == (10, 15, 24, 26)
    assert tight_box_of_all(maps["multi_region"], 0.2) == (0, 2, 24, 26)
    # Diagonal neighbours are connected (8-connectivity): 9 + 9 pixels beat 4.
    assert tf_box(maps["diagonal_touch"], 0.2) == (1, 1, 6, 6)
    # A constant map normalises to zeros: no foreground. Un-normalised, all of it is foreground.
    flat = export.normalize_cams_tf(maps["constant"][None]).numpy()[0]
    assert tf_box(flat, 0.2) == (0, 0, 0, 0)
    assert tf_box(maps["constant"], 0.2) == (0, 0, 10, 8)
    assert tf_box(maps["single_pixel"], 0.2) == (2, 6, 2, 6)
    # Threshold 1: nothing is above the max, so no foreground.
    assert tf_box(maps["smooth0"], 1.0) == (0, 0, 0, 0)


def test_batched_boxes_equal_one_by_one():
    maps = [m for m in rule_maps().values() if m.shape == (20, 30)]
    rng = np.random.default_rng(3)
    maps += [smooth_map(rng, 30, 4)[:20] for _ in range(3)]
    maps = [(m - m.min()) / max(m.max() - m.min(), 1e-9) for m in maps]
    batch = export.largest_region_boxes(np.stack(maps), 0.3).numpy()
    assert [tuple(b) for b in batch.tolist()] == [reference_box(m, 0.3) for m in maps]


@pytest.mark.parametrize("shape", ["serpentine", "spiral", "transposed_reversed_serpentine"])
def test_labels_converge_fast_on_snakes(shape):
    size = 224
    mask = {"serpentine": serpentine(size), "spiral": spiral(size)}.get(shape)
    if mask is None:
        mask = serpentine(size).T[::-1, ::-1].copy()
    labels, iterations = export.connected_component_labels(mask[None] > 0)
    labels = labels.numpy()[0]
    count, reference = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)[:2]
    assert count == 2  # one path
    first = int(np.argmax(reference.ravel() == 1))
    assert np.all(labels[mask > 0] == first)
    assert np.all(labels[mask == 0] == size * size)
    # The path is ~25,000 pixels long: plain min-propagation would need that many steps.
    assert int(iterations) <= 12


def test_labels_of_several_components_and_images():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) > 0.55
    labels = export.connected_component_labels(masks)[0].numpy()
    for mask, got in zip(masks, labels):
        count, reference = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)[:2]
        assert count > 5
        for region in range(1, count):
            pixels = reference == region
            assert np.all(got[pixels] == int(np.argmax(pixels.ravel())))


def test_rescale_boxes_by_hand():
    boxes = tf.constant([[0, 0, 31, 31], [8, 4, 15, 7], [31, 31, 31, 31], [0, 0, 0, 0]])
    sizes = tf.constant([[48, 64], [48, 64], [1, 1], [100, 10]])  # (height, width)
    got = export.rescale_boxes(boxes, (32, 32), sizes).numpy().tolist()
    # Model column x covers input columns [x * W0 / 32, (x + 1) * W0 / 32).
    assert got == [
        [0, 0, 63, 47],
        [16, 6, 31, 11],  # x: 8*2=16, 16*2-1=31; y: 4*1.5=6, ceil(8*1.5)-1=11
        [0, 0, 0, 0],
        [0, 0, 0, 3],  # x: ceil(1*10/32)-1 = 0; y: ceil(1*100/32)-1 = 3
    ]


def test_normalize_cams_tf():
    cams = np.stack([
        np.array([[1.0, 3.0], [2.0, 5.0]]),
        np.full((2, 2), 4.0),
        np.array([[1.0, np.nan], [2.0, 3.0]]),
        np.array([[1.0, np.inf], [2.0, 3.0]]),
    ]).astype(np.float32)
    got = export.normalize_cams_tf(cams).numpy()
    np.testing.assert_allclose(got[0], [[0.0, 0.5], [0.25, 1.0]])
    assert np.all(got[1:] == 0)


# ---------------------------------------------------------------------------
# The serving signatures, on a tiny model and tiny images.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    # 32x32 input, one 2x2 pooling: 16x16 CAMs.
    return get_model("tiny_gap", num_classes=3, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), widths=(8, 16))


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
    from keras_has import localization

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
    assert set(loaded.signatures) == {"serving_default", "serving_images"}
    default = loaded.signatures["serving_default"]
    assert set(default.structured_input_signature[1]) == {"images_bytes"}
    assert default.structured_input_signature[1]["images_bytes"].dtype == tf.string
    images = loaded.signatures["serving_images"].structured_input_signature[1]["images"]
    assert images.dtype == tf.uint8 and images.shape.as_list() == [None, None, None, 3]
    assert set(default.structured_outputs) == set(export.OUTPUT_KEYS)


def test_outputs_match_the_keras_model(model, loaded):
    from keras_has.cam import compute_cams

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
    np.testing.assert_array_equal(out["boxes"], boxes)  # input frame == model frame here
    edges = np.concatenate([boxes[:, :2], boxes[:, 2:] + 1], 1) / IMAGE_SIZE
    np.testing.assert_allclose(out["boxes_normalized"], edges, atol=1e-6)
    np.testing.assert_array_equal(out["image_sizes"], [[IMAGE_SIZE, IMAGE_SIZE]] * 3)


def test_preprocessing_matches_the_eval_pipeline():
    from keras_has.data import pipeline

    image = smooth_image(5, 45, 71)
    ours = export.resize_images(image, (IMAGE_SIZE, IMAGE_SIZE)).numpy()
    theirs = pipeline._resize(image, IMAGE_SIZE).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_bytes_any_size_boxes_in_each_image_frame(loaded):
    sizes = [(48, 64), (20, 90), (32, 32)]
    images = [smooth_image(10 + i, h, w) for i, (h, w) in enumerate(sizes)]
    out = run_bytes(loaded, [encode(im) for im in images])  # PNG: lossless
    np.testing.assert_array_equal(out["image_sizes"], sizes)
    model_boxes = expected_model_frame_boxes(out["cams"])
    for i, (h, w) in enumerate(sizes):
        assert out["boxes"][i].tolist() == to_input_frame(model_boxes[i], h, w)
        # The same answer as one image alone through the uint8 signature.
        alone = run_images(loaded, images[i][None])
        for key in ("classes", "boxes", "image_sizes", "class_names"):
            np.testing.assert_array_equal(alone[key][0], out[key][i])
        np.testing.assert_allclose(alone["cams"][0], out["cams"][i], atol=1e-5)


def test_rest_request_body_as_tf_serving_decodes_it(loaded):
    images = [smooth_image(20, 40, 30), smooth_image(21, 24, 36)]
    body = json.dumps({"instances": [
        {"images_bytes": {"b64": base64.b64encode(encode(im, ".jpg")).decode("ascii")}}
        for im in images
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
            columns[name].append(base64.b64decode(value["b64"]) if isinstance(value, dict) else value)
    outputs = signature(**{name: tf.constant(values) for name, values in columns.items()})
    predictions = [{k: v.numpy()[i].tolist() for k, v in outputs.items()} for i in range(len(images))]
    json.dumps({"predictions": [{k: v if not isinstance(v, list) or not v or not isinstance(v[0], bytes)
                                 else [s.decode() for s in v] for k, v in p.items()} for p in predictions]})
    direct = run_bytes(loaded, [encode(im, ".jpg") for im in images])
    for i, prediction in enumerate(predictions):
        assert prediction["boxes"] == direct["boxes"][i].tolist()
        assert prediction["image_sizes"] == list(images[i].shape[:2])
        assert prediction["class_names"][0].decode() in CLASS_NAMES
    # The uint8 signature takes nested lists per instance.
    rows = {"instances": [{"images": images[0].tolist()}]}
    pixels = tf.constant([inst["images"] for inst in json.loads(json.dumps(rows))["instances"]], tf.uint8)
    out = loaded.signatures["serving_images"](images=pixels)
    assert out["image_sizes"].numpy().tolist() == [[40, 30]]


def test_empty_batch(loaded):
    out = run_bytes(loaded, np.zeros([0], object).astype(bytes))
    assert out["boxes"].shape == (0, 4) and out["classes"].shape == (0, 2)
    out = run_images(loaded, np.zeros([0, 5, 5, 3], np.uint8))
    assert out["boxes"].shape == (0, 4) and out["cams"].shape == (0, 16, 16)
