"""Segments from hand-made temporal CAMs."""
import numpy as np
import pytest

from keras_has.temporal import cam_segments, detect_video
from keras_has.temporal.segments import runs_above


def test_runs_above_edges():
    assert runs_above([1, 1, 0, 1, 0, 1], 1) == [(0, 1), (3, 3), (5, 5)]
    assert runs_above([0, 0], 1) == []
    assert runs_above([2, 2, 2], 1) == [(0, 2)]


def test_cam_segments_threshold_on_normalised_cam_and_raw_mean_score():
    cam = [0, 0, 5, 10, 10, 0, 6, 0]  # normalised: 0 0 .5 1 1 0 .6 0
    assert cam_segments(cam, 0.5) == [(2, 4, pytest.approx(25 / 3)), (6, 6, pytest.approx(6.0))]
    assert cam_segments(cam, 0.55) == [(3, 4, pytest.approx(10.0)), (6, 6, pytest.approx(6.0))]
    assert cam_segments(cam, 0.7) == [(3, 4, pytest.approx(10.0))]


def test_cam_segments_offset_and_negative_values():
    # Min-max normalisation: -4 -> 0, 4 -> 1; threshold 0.5 keeps values >= 0.
    cam = [-4, 0, 4, -4]
    assert cam_segments(cam, 0.5) == [(1, 2, pytest.approx(2.0))]


def test_constant_cam():
    assert cam_segments([3, 3, 3], 0.0) == [(0, 2, 3.0)]
    assert cam_segments([3, 3, 3], 0.1) == []


def test_cam_segments_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        cam_segments([1, 2], 1.5)
    with pytest.raises(ValueError, match="1-D"):
        cam_segments(np.zeros([2, 2]), 0.5)


def test_detect_video_units_and_present_classes():
    cam = np.zeros([8, 3])
    cam[:, 0] = [0, 9, 9, 0, 0, 0, 0, 0]
    cam[:, 1] = [0, 0, 5, 10, 10, 0, 6, 0]
    cam[:, 2] = [7, 7, 0, 0, 0, 0, 0, 0]
    names = ["a", "b", "c"]
    # Only class b is present (p >= 0.1): frames 2..4 -> [1.0, 2.5] s at 2 features/s.
    dets = detect_video("v", cam, [0.05, 0.9, 0.05], names, feature_rate=2.0, threshold=0.5)
    assert dets == [("v", "b", 1.0, 2.5, pytest.approx(25 / 3)),
                    ("v", "b", 3.0, 3.5, pytest.approx(6.0))]
    # Two classes above the class threshold.
    dets = detect_video("v", cam, [0.3, 0.6, 0.1], names, 2.0, threshold=0.5,
                        class_threshold=0.25)
    assert sorted({d[1] for d in dets}) == ["a", "b"]
    assert ("v", "a", 0.5, 1.5, pytest.approx(9.0)) in dets
    # The top class is always present even below the class threshold.
    dets = detect_video("v", cam, [0.2, 0.2, 0.6], names, 1.0, threshold=0.5,
                        class_threshold=0.9)
    assert dets == [("v", "c", 0.0, 2.0, pytest.approx(7.0))]
