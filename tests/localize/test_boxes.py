"""Boxes from CAMs (both box rules), IoU, normalisation, and the all-level sweep."""
import dataclasses

import cv2
import numpy as np
import pytest

from keras_has.localize import boxes as loc

# 4x5 map: region A (3 px, top-left), region B (3 px, right column, lower values).
MAP_4X5 = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
                    [0.0, 1.0, 0.8, 0.0, 0.3],
                    [0.0, 0.9, 0.0, 0.0, 0.4],
                    [0.0, 0.0, 0.0, 0.0, 0.5]], np.float32)


# ------------------------------------------------------------- every region, two ways
@dataclasses.dataclass
class ComponentTable:
    """Every 8-connected region of ``gray > level`` for each level below the max."""
    level: np.ndarray
    count: np.ndarray
    box: np.ndarray
    first: np.ndarray
    max_gray: int


def component_table(gray):
    """The one-pass sweep's own list of regions (its emit path)."""
    gray = loc.check_gray_map(gray)
    rows = loc.region_table(gray)
    return ComponentTable(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2:6].copy(),
                          rows[:, 6].copy(), int(gray.max()))


def component_table_reference(gray):
    """Reference: one ``cv2.connectedComponentsWithStats`` per level. Slow, obvious."""
    gray = loc.check_gray_map(gray)
    max_gray = int(gray.max())
    level, count, box, first = [], [], [], []
    for lv in range(max_gray):
        fg = (gray > lv).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            level.append(lv)
            count.append(area)
            box.append((x, y, x + w - 1, y + h - 1))
            first.append(int(np.flatnonzero(labels.reshape(-1) == k)[0]))
    return ComponentTable(np.array(level, np.int64), np.array(count, np.int64),
                          np.array(box, np.int64).reshape(-1, 4), np.array(first, np.int64),
                          max_gray)


@pytest.mark.parametrize("threshold, tight, wsol", [
    (0.9, (1, 1, 1, 1), (1, 1, 2, 2)),   # level 229: only the 255 pixel
    (0.5, (1, 1, 2, 2), (1, 1, 3, 3)),   # level 127: region A only (127 is not > 127)
    (0.2, (1, 1, 2, 2), (1, 1, 3, 3)),   # level 51: A and B tie at 3 px; A comes first
    (0.0, (1, 1, 2, 2), (1, 1, 3, 3)),
])

def test_hand_made_map_both_rules(threshold, tight, wsol):
    got = loc.boxes_from_cams(MAP_4X5[None], threshold)
    assert got.tolist() == [list(tight)]
    got = loc.boxes_from_cams(MAP_4X5[None], threshold, box_rule="wsolevaluation")
    assert got.tolist() == [list(wsol)]


def test_multi_contour_on_hand_made_map():
    at_02 = loc.boxes_from_cams(MAP_4X5, 0.2, multi_contour=True)
    assert len(at_02) == 1
    assert sorted(map(tuple, at_02[0].tolist())) == [(1, 1, 2, 2), (4, 1, 4, 3)]
    at_05 = loc.boxes_from_cams(MAP_4X5, 0.5, multi_contour=True)
    assert at_05[0].tolist() == [[1, 1, 2, 2]]


def test_rules_differ_pixel_count_vs_contour_area():
    # A 5-pixel line (contour area 0) and a 2x2 square (4 pixels, contour area 1).
    cam = np.zeros((4, 6), np.float32)
    cam[0, :5] = 1.0
    cam[2:4, 0:2] = 1.0
    assert loc.boxes_from_cams(cam, 0.5).tolist() == [[0, 0, 4, 0]]
    # wsolevaluation: largest contour area is the square; box x1, y1 = x + w, y + h
    # clipped to (W - 1, H - 1) = (5, 3).
    assert loc.boxes_from_cams(cam, 0.5, box_rule="wsolevaluation").tolist() == [[0, 2, 2, 3]]


def test_ring_hole_contour_counts_for_wsolevaluation_only():
    cam = np.zeros((4, 5), np.float32)
    cam[0:3, 0:3] = 1.0
    cam[1, 1] = 0.0
    tight = loc.boxes_from_cams(cam, 0.5, multi_contour=True)[0]
    wsol = loc.boxes_from_cams(cam, 0.5, multi_contour=True, box_rule="wsolevaluation")[0]
    assert tight.tolist() == [[0, 0, 2, 2]]
    assert len(wsol) == 2  # RETR_TREE returns the outer and the hole contour
    assert [0, 0, 3, 3] in wsol.tolist()


def test_no_foreground_gives_zero_box():
    cam = np.zeros((3, 4), np.float32)
    assert loc.boxes_from_cams(cam, 0.5).tolist() == [[0, 0, 0, 0]]
    flat = np.full((3, 4), 0.5, np.float32)
    # Threshold 1.0: level = max, nothing is strictly above it.
    assert loc.boxes_from_cams(flat, 1.0).tolist() == [[0, 0, 0, 0]]
    assert loc.boxes_from_cams(flat, 1.0, multi_contour=True)[0].tolist() == [[0, 0, 0, 0]]


def _wsol_reference(scoremap, thresholds):
    """Independent transcription of wsolevaluation's documented box semantics."""
    height, width = scoremap.shape
    img = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(img, int(t * np.max(img)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if not contours:
            out.append([0, 0, 0, 0])
            continue
        x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
        out.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return out


def test_wsolevaluation_rule_matches_reference_on_random_maps():
    rng = np.random.default_rng(0)
    thresholds = np.arange(0, 1, 0.05)
    for _ in range(10):
        low = rng.random((4, 4)).astype(np.float32)
        cam = loc.normalize_cams(cv2.resize(low, (23, 17), interpolation=cv2.INTER_LINEAR))[0]
        ours = [loc.boxes_from_cams(cam, t, box_rule="wsolevaluation")[0].tolist()
                for t in thresholds]
        assert ours == _wsol_reference(cam, thresholds)


def test_iou_hand_computed():
    assert loc.iou([0, 0, 1, 1], [1, 1, 2, 2])[0, 0] == pytest.approx(1 / 7)
    assert loc.iou([0, 0, 1, 1], [0, 0, 1, 1])[0, 0] == 1.0
    assert loc.iou([0, 0, 1, 1], [2, 2, 3, 3])[0, 0] == 0.0
    # (0,0,3,3) has 16 px, (2,0,5,1) has 8 px, overlap 2x2 = 4: 4 / 20.
    got = loc.iou([[0, 0, 3, 3], [0, 0, 0, 0]], [[2, 0, 5, 1], [0, 0, 0, 0]])
    np.testing.assert_allclose(got, [[4 / 20, 1 / 16], [0.0, 1.0]])


def test_iou_rejects_bad_boxes():
    with pytest.raises(ValueError, match="x0, y0, x1, y1"):
        loc.iou([3, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"\[..., 4\]"):
        loc.iou([0, 0, 1], [0, 0, 1, 1])


def test_normalize_handles_constant_nan_inf():
    maps = np.stack([np.full((2, 3), 5.0), np.array([[0, np.nan, 1], [2, 3, 4]]),
                     np.array([[0, np.inf, 1], [2, 3, 4]]), np.arange(6.).reshape(2, 3)])
    out = loc.normalize_cams(maps)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:3], 0.0)
    np.testing.assert_allclose(out[3], np.arange(6.).reshape(2, 3) / 5)


def test_input_errors():
    with pytest.raises(ValueError, match="cams"):
        loc.boxes_from_cams(np.zeros((1, 2, 3, 4)), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loc.boxes_from_cams(np.full((2, 2), 2.0), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        loc.boxes_from_cams(np.full((2, 2), np.nan), 0.5)
    with pytest.raises(ValueError, match="threshold"):
        loc.boxes_from_cams(np.zeros((2, 2)), 1.5)
    with pytest.raises(ValueError, match="box_rule"):
        loc.boxes_from_cams(np.zeros((2, 2)), 0.5, box_rule="contour")


def test_resize_cams_bilinear_matches_cv2():
    rng = np.random.default_rng(1)
    maps = rng.random((2, 3, 4)).astype(np.float32)
    out = loc.resize_cams(maps, (6, 8))
    assert out.shape == (2, 6, 8)
    np.testing.assert_allclose(out[1], cv2.resize(maps[1], (8, 6)))


def _random_maps(rng, n=120):
    """Small maps of many kinds: noisy, few values (plateaus, ties), smooth, clipped,
    all-zero, constant, single pixel, 1xN, Nx1, checkerboard (diagonal joins)."""
    fixed = [np.zeros((3, 4), np.uint8), np.full((2, 3), 7, np.uint8),
             np.array([[255]], np.uint8), np.array([[0]], np.uint8),
             rng.integers(0, 256, (1, 17)).astype(np.uint8),
             rng.integers(0, 256, (13, 1)).astype(np.uint8),
             (np.indices((6, 7)).sum(axis=0) % 2 * 200).astype(np.uint8),
             rng.integers(0, 256, (40, 40)).astype(np.uint8)]
    yield from fixed
    for i in range(n):
        kind = i % 5
        if kind == 0:
            yield rng.integers(0, 256, rng.integers(1, 9, 2)).astype(np.uint8)
        elif kind == 1:
            yield (rng.integers(0, 4, rng.integers(1, 12, 2)) * 60).astype(np.uint8)
        elif kind == 4:  # thin lines: 1 x N or N x 1, plateaus and zeros
            shape = (1, int(rng.integers(1, 30))) if i % 2 else (int(rng.integers(1, 30)), 1)
            yield (rng.integers(0, 3, shape) * 100).astype(np.uint8)
        else:
            low = rng.random(rng.integers(2, 6, 2)).astype(np.float32) ** 2
            size = tuple(int(s) for s in rng.integers(5, 40, 2))
            cam = loc.normalize_cams(cv2.resize(low, size))[0]
            g = loc.quantize_cams(cam)[0]
            yield np.minimum(g, 200).astype(np.uint8) if kind == 3 else g


def _realistic_map(seed):
    """A 224x224 CAM like the benchmark's: 7x7 random squared, upsampled bilinearly."""
    low = np.random.default_rng(seed).random((1, 7, 7)).astype(np.float32) ** 2
    return loc.quantize_cams(loc.normalize_cams(loc.resize_cams(low, (224, 224))))[0]


def _sorted_rows(table):
    order = np.lexsort((table.first, table.level))
    return [getattr(table, k)[order].tolist() for k in ("level", "count", "box", "first")]


def _reduce_reference(table, gt):
    """Per level, from the per-level OpenCV table: largest region's box (most pixels,
    then earliest first pixel) and the max IoU of any region's box with ``gt``."""
    largest = np.zeros((256, 4), np.int64)
    has = np.zeros(256, bool)
    best = np.zeros(256)
    for lv in np.unique(table.level):
        rows = np.flatnonzero(table.level == lv)
        pick = rows[np.lexsort((table.first[rows], -table.count[rows]))[0]]
        largest[lv], has[lv] = table.box[pick], True
        best[lv] = loc.iou(table.box[rows], gt).max()
    return largest, has, best


def test_sweep_levels_hand_made_map():
    gray = loc.quantize_cams(MAP_4X5)[0]  # A: 255, 204, 229; B: 76, 102, 127
    sweep = loc.sweep_levels(gray, [[4, 1, 4, 3]])  # GT = region B's box at level 0
    assert sweep.max_gray == 255
    expect = {0: (1, 1, 2, 2),      # A and B tie at 3 px; A's first pixel comes first
              76: (1, 1, 2, 2), 203: (1, 1, 2, 2), 204: (1, 1, 1, 2),
              228: (1, 1, 1, 2), 229: (1, 1, 1, 1), 254: (1, 1, 1, 1), 255: (0, 0, 0, 0)}
    for lv, box in expect.items():
        assert tuple(sweep.largest[lv]) == box, lv
    assert sweep.has_fg.tolist() == [True] * 255 + [False]
    # B shrinks from the top: (4,1,4,3) up to level 75, (4,2,4,3), (4,3,4,3), then gone.
    for lv, value in ((0, 1.0), (75, 1.0), (76, 2 / 3), (101, 2 / 3), (102, 1 / 3),
                      (126, 1 / 3), (127, 0.0), (255, 0.0)):
        assert sweep.best_iou[lv] == pytest.approx(value), lv
    np.testing.assert_array_equal(loc.sweep_levels(gray).best_iou, 0.0)


def test_sweep_on_empty_and_bad_input():
    sweep = loc.sweep_levels(np.zeros((2, 3), np.uint8), [[0, 0, 1, 1]])
    assert not sweep.has_fg.any() and sweep.max_gray == 0
    np.testing.assert_array_equal(sweep.largest, 0)
    assert len(component_table(np.zeros((2, 3), np.uint8)).level) == 0
    with pytest.raises(ValueError, match="gray: expected a non-empty uint8"):
        loc.sweep_levels(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="gray"):
        component_table(np.zeros((0, 3), np.uint8))
    with pytest.raises(ValueError, match="gt_boxes"):
        loc.sweep_levels(np.zeros((2, 3), np.uint8), [[2, 0, 1, 1]])


def test_component_table_equals_per_level_reference():
    rng = np.random.default_rng(2)
    maps = list(_random_maps(rng)) + [_realistic_map(0)]
    for gray in maps:
        assert _sorted_rows(component_table(gray)) == \
            _sorted_rows(component_table_reference(gray)), gray


def test_sweep_levels_equals_reduced_reference():
    rng = np.random.default_rng(4)
    maps = list(_random_maps(rng, 60)) + [_realistic_map(1)]
    for gray in maps:
        h, w = gray.shape
        # Integer and fractional GT boxes, one to three per map.
        corners = np.sort(rng.uniform(0, 1, (rng.integers(1, 4), 2, 2)), axis=1)
        gt = np.concatenate([corners[:, 0] * [w, h], corners[:, 1] * [w, h]], axis=1)
        if rng.random() < 0.5:
            gt = np.floor(gt)
        sweep = loc.sweep_levels(gray, gt)
        largest, has, best = _reduce_reference(component_table_reference(gray), gt)
        np.testing.assert_array_equal(sweep.largest, largest)
        np.testing.assert_array_equal(sweep.has_fg, has)
        np.testing.assert_array_equal(sweep.best_iou, best)  # same float64 operations


def test_sweep_largest_equals_per_threshold_boxes():
    rng = np.random.default_rng(3)
    thresholds = np.arange(0, 1, 0.01)
    for gray in list(_random_maps(rng))[:50]:
        cam = gray.astype(np.float32) / 255.0
        sweep = loc.sweep_levels(gray)
        levels = loc.threshold_levels(thresholds, gray.max())
        per_threshold = [loc.boxes_from_cams(cam, t)[0].tolist() for t in thresholds]
        assert [sweep.largest[lv].tolist() for lv in levels] == per_threshold


def test_sweep_workspace_is_reused_across_maps_and_threads_get_their_own():
    # Maps of different sizes in turn, then the same maps again: the reused (and
    # regrown) working arrays must not carry anything from one map to the next.
    rng = np.random.default_rng(7)
    maps = [rng.integers(0, 256, shape).astype(np.uint8)
            for shape in ((5, 7), (12, 9), (3, 3), (12, 9), (20, 1))]
    first = [loc.region_table(g) for g in maps]
    again = [loc.region_table(g) for g in reversed(maps)][::-1]
    for a, b, g in zip(first, again, maps):
        np.testing.assert_array_equal(a, b)
        assert _sorted_rows(component_table(g)) == _sorted_rows(component_table_reference(g))
    import threading

    main = loc._workspace((4, 4))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(loc._workspace((4, 4))))
    thread.start()
    thread.join()
    assert seen[0][0] is not main[0]
    # A map above the kept size gets arrays of its own; the kept ones stay.
    big = int(np.sqrt(loc._WORKSPACE_KEPT_PIXELS)) + 8
    assert loc._workspace((big, big))[0] is not loc._workspace((4, 4))[0]
    assert loc._workspace((4, 4))[0] is loc._workspace((6, 6))[0]
