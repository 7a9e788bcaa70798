"""Tests for keras_has.localize.boxes_tf: the in-graph box rule against an OpenCV reference."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_has.localize import boxes_tf as localization_tf



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
    keys = (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
    x, y, w, h = (stats[best, k] for k in keys)
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
    return tuple(localization_tf.largest_region_boxes(cam[None], threshold).numpy()[0].tolist())


@pytest.mark.parametrize("name, cam", list(rule_maps().items()))
@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.65])
def test_in_graph_box_matches_reference_rule(name, cam, threshold):
    assert tf_box(cam, threshold) == reference_box(cam, threshold)


def test_in_graph_box_matches_boxes_from_cams():
    localization = pytest.importorskip("keras_has.localize.boxes")
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
    flat = localization_tf.normalize_cams_tf(maps["constant"][None]).numpy()[0]
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
    batch = localization_tf.largest_region_boxes(np.stack(maps), 0.3).numpy()
    assert [tuple(b) for b in batch.tolist()] == [reference_box(m, 0.3) for m in maps]


@pytest.mark.parametrize(
    "shape", ["serpentine", "spiral", "transposed_reversed_serpentine", "checkerboard"])
def test_labels_converge_fast_on_snakes(shape):
    size = 224
    mask = {
        "serpentine": serpentine(size),
        "spiral": spiral(size),
        "transposed_reversed_serpentine": serpentine(size).T[::-1, ::-1].copy(),
        # Every pixel is its own horizontal run, joined to the next rows only diagonally.
        "checkerboard": (np.indices((size, size)).sum(0) % 2).astype(np.float32),
    }[shape]
    labels, iterations = localization_tf.connected_component_labels(mask[None] > 0)
    labels = labels.numpy()[0]
    count, reference = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)[:2]
    assert count == 2  # one region
    first = int(np.argmax(reference.ravel() == 1))
    assert np.all(labels[mask > 0] == first)
    assert np.all(labels[mask == 0] == size * size)
    # The path is ~25,000 pixels long: plain min-propagation would need that many steps.
    assert int(iterations) <= 12


def test_labels_of_several_components_and_images():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 17, 23)) > 0.55
    labels = localization_tf.connected_component_labels(masks)[0].numpy()
    for mask, got in zip(masks, labels):
        count, reference = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8)[:2]
        assert count > 5
        for region in range(1, count):
            pixels = reference == region
            assert np.all(got[pixels] == int(np.argmax(pixels.ravel())))


def test_regions_do_not_leak_across_images_and_thin_shapes():
    masks = np.zeros((3, 4, 5), bool)
    masks[0, 3, :] = True  # last row of image 0 ...
    masks[1, 0, :3] = True  # ... above the first row of image 1: different images
    masks[1, 2:, 4] = True
    masks[2, :, 0] = True
    labels = localization_tf.connected_component_labels(masks)[0].numpy()
    assert labels[0][3].tolist() == [15] * 5 and labels[1][0].tolist()[:3] == [0] * 3
    assert labels[1][2:, 4].tolist() == [14, 14] and labels[2][:, 0].tolist() == [0] * 4
    cams = masks.astype(np.float32)
    boxes = localization_tf.largest_region_boxes(cams, 0.5).numpy().tolist()
    assert boxes == [[0, 3, 4, 3], [0, 0, 2, 0], [0, 0, 0, 3]]
    column = np.zeros((2, 6, 1), np.float32)
    column[0, 1:3] = column[0, 4:] = 1
    row = np.zeros((1, 1, 7), np.float32)
    row[0, 0, 2:4] = row[0, 0, 5:7] = 1
    assert localization_tf.largest_region_boxes(column, 0.5).numpy().tolist() == [[0, 1, 0, 2], [0, 0, 0, 0]]
    assert localization_tf.largest_region_boxes(row, 0.5).numpy().tolist() == [[2, 0, 3, 0]]


def test_rescale_boxes_by_hand():
    boxes = tf.constant([[0, 0, 31, 31], [8, 4, 15, 7], [31, 31, 31, 31], [0, 0, 0, 0]])
    sizes = tf.constant([[48, 64], [48, 64], [1, 1], [100, 10]])  # (height, width)
    got = localization_tf.rescale_boxes(boxes, (32, 32), sizes).numpy().tolist()
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
    got = localization_tf.normalize_cams_tf(cams).numpy()
    np.testing.assert_allclose(got[0], [[0.0, 0.5], [0.25, 1.0]])
    assert np.all(got[1:] == 0)
