"""THUMOS14 detection mAP at temporal IoU thresholds, and video-level classification mAP.

`detection_map` follows the THUMOS14 protocol as specified in issue 13: per class,
detections are taken in descending score (ties keep their input order: the sort is
stable); a detection is a true positive when some not-yet-matched ground-truth segment
of the same video and class has tIoU >= the threshold (the one with the highest tIoU
is taken; ties go to the first listed), else a false positive; AP is the sum over
detections of the precision at that rank times 1[true positive], divided by the number
of ground-truth segments of the class (non-interpolated AP); mAP is the mean over the
classes that have ground truth, in percent. Detections of classes without ground truth
are ignored.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

__all__ = ["tiou", "detection_map", "average_precision", "classification_map",
           "validate_tious"]


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def tiou(a, b) -> float:
    """Temporal IoU of two segments `(t_start, t_end)` (continuous time, end >= start).

    Intersection `max(0, min(e1, e2) - max(s1, s2))`; union the sum of the lengths minus
    it. Touching segments give 0; two zero-length segments (union 0) give 0.
    """
    s1, e1 = float(a[0]), float(a[1])
    s2, e2 = float(b[0]), float(b[1])
    if e1 < s1 or e2 < s2:
        raise ValueError(f"tiou: segments must have t_end >= t_start, received {a!r}, {b!r}")
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = (e1 - s1) + (e2 - s2) - inter
    return inter / union if union > 0 else 0.0


def validate_tious(tiou_thresholds) -> tuple:
    """Checks that every threshold is a number in (0, 1]; returns them as floats."""
    if isinstance(tiou_thresholds, (int, float)) and not isinstance(tiou_thresholds, bool):
        tiou_thresholds = (tiou_thresholds,)
    values = tuple(tiou_thresholds)
    if not values:
        raise ValueError("tiou_thresholds: expected at least one threshold in (0, 1], "
                         "received none")
    for t in values:
        if (isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating))
                or not _finite(t) or not 0.0 < float(t) <= 1.0):
            raise ValueError(f"tiou_thresholds: expected numbers in (0, 1], received {t!r} "
                             f"in {list(values)}")
    return tuple(float(t) for t in values)


def _check_rows(rows, width, what):
    out = []
    for i, row in enumerate(rows):
        row = tuple(row)
        if len(row) != width:
            raise ValueError(f"{what}[{i}]: expected {width} fields, received {row!r}")
        s, e = row[2], row[3]
        if not (_finite(s) and _finite(e)) or float(e) < float(s):
            raise ValueError(f"{what}[{i}]: expected finite t_start <= t_end, received {row!r}")
        if what == "ground_truth" and float(e) == float(s):
            raise ValueError(f"{what}[{i}]: expected t_end > t_start, received {row!r}")
        if width == 5 and not _finite(row[4]):
            raise ValueError(f"{what}[{i}]: expected a finite score, received {row!r}")
        out.append(row)
    return out


def _class_ap(dets, gts, threshold):
    """AP of one class: `dets` [(video, s, e, score)] sorted, `gts` {video: [(s, e)]}."""
    num_gt = sum(len(v) for v in gts.values())
    matched = {video: [False] * len(segs) for video, segs in gts.items()}
    tp_count = 0
    ap = 0.0
    for rank, (video, s, e, _) in enumerate(dets, start=1):
        best, best_iou = -1, -1.0
        for j, gt in enumerate(gts.get(video, ())):
            if matched[video][j]:
                continue
            overlap = tiou((s, e), gt)
            if overlap >= threshold and overlap > best_iou:
                best, best_iou = j, overlap
        if best >= 0:
            matched[video][best] = True
            tp_count += 1
            ap += tp_count / rank
    return ap / num_gt


def detection_map(detections, ground_truth, tiou_thresholds=(0.1, 0.2, 0.3, 0.4, 0.5),
                  return_per_class=False):
    """THUMOS14 temporal detection mAP (percent) at each tIoU threshold.

    Args:
      detections: iterable of `(video_id, class, t_start, t_end, score)`.
      ground_truth: iterable of `(video_id, class, t_start, t_end)` (t_end > t_start).
      tiou_thresholds: numbers in (0, 1].
      return_per_class: also return `{tiou: {class: AP in percent}}`.

    Returns:
      `{tiou: mAP}` (and the per-class dict when asked). With no ground truth at all,
      every mAP is NaN.

    Raises:
      ValueError for a threshold outside (0, 1], a malformed row, a non-finite time or
      score, or a segment that ends before it starts (naming the row).
    """
    thresholds = validate_tious(tiou_thresholds)
    dets = _check_rows(detections, 5, "detections")
    gts = _check_rows(ground_truth, 4, "ground_truth")
    gt_by_class = defaultdict(lambda: defaultdict(list))
    for video, cls, s, e in gts:
        gt_by_class[cls][video].append((float(s), float(e)))
    det_by_class = defaultdict(list)
    for video, cls, s, e, score in dets:
        if cls in gt_by_class:
            det_by_class[cls].append((video, float(s), float(e), float(score)))
    for cls in det_by_class:
        det_by_class[cls].sort(key=lambda d: -d[3])  # stable: ties keep input order
    result, per_class = {}, {}
    for t in thresholds:
        aps = {cls: 100.0 * _class_ap(det_by_class.get(cls, []), gt_by_class[cls], t)
               for cls in gt_by_class}
        per_class[t] = aps
        result[t] = float(np.mean(list(aps.values()))) if aps else float("nan")
    return (result, per_class) if return_per_class else result


def average_precision(scores, labels) -> float:
    """Non-interpolated AP (fraction): mean precision at the rank of each positive.

    Ranks by descending score, ties in input order. NaN when there is no positive.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"average_precision: {scores.shape} scores for {labels.shape} labels")
    if not labels.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


def classification_map(scores, labels) -> float:
    """Video-level classification mAP in percent: AP per class over videos, mean over
    the classes with at least one positive video.

    Args:
      scores: `[N, K]` class scores.
      labels: `[N, K]` 0/1 video-level labels.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(f"classification_map: expected [N, K] scores and labels of the same "
                         f"shape, received {scores.shape} and {labels.shape}")
    aps = [average_precision(scores[:, k], labels[:, k]) for k in range(scores.shape[1])
           if labels[:, k].any()]
    return 100.0 * float(np.mean(aps)) if aps else float("nan")
