"""Action segments from temporal CAMs: threshold, connected runs of frames, scores.

For one video and one class: the CAM over the video's real frames is min-max
normalised to [0, 1] (a constant CAM becomes all zeros); frames whose normalised value
is >= `threshold` form the foreground, and every maximal run of consecutive foreground
frames is one segment. Its score is the mean *raw* CAM over its frames (comparable
across videos of a class, as detection AP needs). Frame `i` covers
`[i / rate, (i + 1) / rate)` seconds, so frames `a..b` (inclusive) are the segment
`[a / rate, (b + 1) / rate]`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["runs_above", "cam_segments", "detect_video"]


def runs_above(values, threshold):
    """Maximal runs of consecutive indices with `values >= threshold`: [(first, last)]."""
    on = np.asarray(values) >= threshold
    if on.ndim != 1:
        raise ValueError(f"runs_above: expected a 1-D array, received shape {on.shape}")
    padded = np.concatenate([[False], on, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(change[::2], change[1::2])]


def cam_segments(cam, threshold=0.5):
    """Segments of one 1-D CAM: `[(first_frame, last_frame, score)]`, frames inclusive.

    Args:
      cam: `[T]` raw CAM of one class over the real frames.
      threshold: fraction in [0, 1] of the min-max normalised CAM.
    """
    cam = np.asarray(cam, np.float64)
    if cam.ndim != 1 or cam.size == 0:
        raise ValueError(f"cam_segments: expected a non-empty 1-D CAM, received shape {cam.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"cam_segments: threshold must be in [0, 1], received {threshold!r}")
    lo, hi = cam.min(), cam.max()
    norm = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
    return [(a, b, float(cam[a:b + 1].mean())) for a, b in runs_above(norm, threshold)]


def detect_video(video_id, cam, probs, class_names, feature_rate, threshold=0.5,
                 class_threshold=0.1):
    """Detections of one video: segments for every class predicted present.

    Args:
      video_id: the video's name.
      cam: `[T, K]` raw CAM over the real frames.
      probs: `[K]` video-level class probabilities; a class is present when its
        probability is >= `class_threshold` (the top class always is).
      class_names: K names.
      feature_rate: features per second (frame -> seconds).
      threshold: CAM threshold (fraction of the normalised CAM).
      class_threshold: probability above which a class is predicted present.

    Returns:
      `[(video_id, class_name, t_start, t_end, score)]`, times in seconds.
    """
    cam = np.asarray(cam)
    probs = np.asarray(probs)
    present = set(np.flatnonzero(probs >= class_threshold).tolist()) | {int(np.argmax(probs))}
    out = []
    for k in sorted(present):
        for a, b, score in cam_segments(cam[:, k], threshold):
            out.append((video_id, class_names[k], a / feature_rate, (b + 1) / feature_rate,
                        score))
    return out
