"""detection_map (THUMOS14 protocol), tIoU and classification mAP against hand-computed values."""
import math

import numpy as np
import pytest

from keras_has.temporal import classification_map, detection_map, tiou
from keras_has.temporal.metrics import average_precision

TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5)


# ----------------------------------------------------------------------------- tIoU
@pytest.mark.parametrize("a, b, expected", [
    ((0, 10), (0, 10), 1.0),          # identical
    ((0, 4), (2, 6), 2 / 6),          # partial overlap
    ((0, 10), (2, 4), 0.2),           # nested
    ((2, 4), (0, 10), 0.2),           # symmetric
    ((0, 5), (5, 9), 0.0),            # touching: no overlap
    ((0, 1), (3, 4), 0.0),            # disjoint
    ((3, 3), (0, 10), 0.0),           # zero-length inside: intersection 0
    ((3, 3), (3, 3), 0.0),            # two points: union 0
    ((0.5, 1.25), (1.0, 2.0), 0.25 / 1.5),
])
def test_tiou_hand_computed(a, b, expected):
    assert tiou(a, b) == pytest.approx(expected, abs=1e-12)


def test_tiou_rejects_reversed_segments():
    with pytest.raises(ValueError, match="t_end >= t_start"):
        tiou((5, 4), (0, 10))


# -------------------------------------------------------------------- detection mAP
def test_one_class_two_videos():
    gt = [("v1", "A", 0, 10), ("v2", "A", 5, 15)]
    dets = [("v1", "A", 0, 10, 0.9),     # TP (tIoU 1)
            ("v2", "A", 0, 4, 0.8),      # FP (no overlap)
            ("v2", "A", 6, 15, 0.7)]     # TP (tIoU 9/10)
    # precision 1/1 at rank 1, 2/3 at rank 3; two ground truths.
    expected = (1 + 2 / 3) / 2 * 100
    result = detection_map(dets, gt, TIOUS)
    assert set(result) == set(TIOUS)
    for t in TIOUS:
        assert result[t] == pytest.approx(expected)


def test_duplicates_are_false_positives():
    gt = [("v1", "A", 0, 10), ("v1", "A", 20, 30)]
    dets = [("v1", "A", 0, 10, 0.9), ("v1", "A", 0, 10, 0.8), ("v1", "A", 20, 30, 0.7)]
    # TP, FP (its ground truth is taken), TP: (1/1 + 2/3) / 2.
    assert detection_map(dets, gt, [0.5])[0.5] == pytest.approx((1 + 2 / 3) / 2 * 100)


def test_detection_overlapping_two_ground_truths_takes_the_highest_tiou():
    gt = [("v1", "A", 0, 10), ("v1", "A", 8, 20)]
    dets = [("v1", "A", 6, 18, 0.9),   # tIoU 4/18 = 0.22 with [0,10], 10/14 = 0.71 with [8,20]
            ("v1", "A", 0, 10, 0.8)]   # tIoU 1 with [0,10]
    # Highest-tIoU matching: det 1 -> [8,20], det 2 -> [0,10]: AP 100 at 0.1 and 0.2.
    # (Matching det 1 to the first ground truth above 0.2 would leave det 2 a false
    # positive: AP 50.)
    result = detection_map(dets, gt, [0.1, 0.2, 0.5, 0.8])
    assert result[0.1] == pytest.approx(100.0)
    assert result[0.2] == pytest.approx(100.0)
    assert result[0.5] == pytest.approx(100.0)
    # At 0.8 only det 2 matches; det 1 is a false positive at rank 1: (1/2) / 2.
    assert result[0.8] == pytest.approx(25.0)


def test_class_without_detections_counts_zero_and_classes_without_gt_are_ignored():
    gt = [("v1", "A", 0, 10), ("v2", "B", 0, 10)]
    dets = [("v1", "A", 0, 10, 0.9),
            ("v1", "C", 0, 10, 0.95)]  # class C has no ground truth: ignored
    result, per_class = detection_map(dets, gt, [0.5], return_per_class=True)
    assert per_class[0.5] == {"A": pytest.approx(100.0), "B": 0.0}
    assert result[0.5] == pytest.approx(50.0)


def test_ties_in_score_keep_input_order():
    gt = [("v1", "A", 0, 10)]
    fp, tp = ("v1", "A", 20, 30, 0.5), ("v1", "A", 0, 10, 0.5)
    assert detection_map([fp, tp], gt, [0.5])[0.5] == pytest.approx(50.0)   # TP at rank 2
    assert detection_map([tp, fp], gt, [0.5])[0.5] == pytest.approx(100.0)  # TP at rank 1


def test_threshold_dependence_and_wrong_video():
    gt = [("v1", "A", 0, 10)]
    dets = [("v1", "A", 0, 3.5, 0.9),   # tIoU 0.35
            ("v2", "A", 0, 10, 0.8)]    # right times, wrong video: FP
    result = detection_map(dets, gt)
    assert result == {0.1: pytest.approx(100.0), 0.2: pytest.approx(100.0),
                      0.3: pytest.approx(100.0), 0.4: 0.0, 0.5: 0.0}


def test_mean_over_classes_hand_computed():
    gt = [("v1", "A", 0, 10), ("v2", "A", 0, 10), ("v1", "B", 20, 40)]
    dets = [("v2", "A", 0, 9, 0.7),     # tIoU 0.9: TP at rank 2
            ("v1", "A", 30, 40, 0.8),   # FP at rank 1
            ("v1", "B", 20, 30, 0.6)]   # tIoU 0.5: TP
    # A: (1/2) / 2 = 25; B: 100 at 0.5, mean 62.5. At 0.6, B's detection fails: A only 25 / 2.
    result = detection_map(dets, gt, [0.5, 0.6])
    assert result[0.5] == pytest.approx(62.5)
    assert result[0.6] == pytest.approx(12.5)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, float("nan"), "0.5", True])
def test_tiou_threshold_outside_range_rejected(bad):
    with pytest.raises(ValueError, match=r"tiou_thresholds.*\(0, 1\]"):
        detection_map([], [("v", "A", 0, 1)], [0.5, bad])


def test_tiou_threshold_one_allowed():
    assert detection_map([("v", "A", 0, 1, 1.0)], [("v", "A", 0, 1)], [1.0])[1.0] == 100.0


def test_malformed_rows_name_the_row():
    with pytest.raises(ValueError, match=r"detections\[1\]"):
        detection_map([("v", "A", 0, 1, 1.0), ("v", "A", 2, 1, 0.5)], [("v", "A", 0, 1)])
    with pytest.raises(ValueError, match=r"ground_truth\[0\].*t_end > t_start"):
        detection_map([], [("v", "A", 1, 1)])
    with pytest.raises(ValueError, match=r"detections\[0\].*score"):
        detection_map([("v", "A", 0, 1, float("nan"))], [("v", "A", 0, 1)])


def test_no_ground_truth_gives_nan():
    assert math.isnan(detection_map([("v", "A", 0, 1, 1.0)], [], [0.5])[0.5])


# ---------------------------------------------------------------- classification
def test_average_precision_hand_computed():
    # Ranks: 0.9 (neg), 0.8 (pos), 0.7 (pos): precisions 1/2 and 2/3.
    assert average_precision([0.9, 0.8, 0.7], [0, 1, 1]) == pytest.approx((0.5 + 2 / 3) / 2)
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_classification_map_hand_computed():
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.2, 0.1], [0.7, 0.6, 0.2]])
    labels = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    # class 0: ranks v0 (neg), v1, v2 -> (1/2 + 2/3) / 2; class 1: v2 (0.6, neg),
    # v1 (0.2, neg), v0 (0.1, pos) -> 1/3; class 2 has no positive video: excluded.
    expected = ((0.5 + 2 / 3) / 2 + 1 / 3) / 2 * 100
    assert classification_map(scores, labels) == pytest.approx(expected)
    with pytest.raises(ValueError, match="same shape"):
        classification_map(scores, labels[:, :2])
