"""Timeline figure: ground truth, both arms' CAMs and detected segments (OpenCV).

One block per video: a ground-truth bar (green), then for each arm its min-max
normalised CAM of the ground-truth class as a curve, the CAM threshold as a grey line
and its detected segments of that class as red bars.
"""
from __future__ import annotations

import cv2
import numpy as np

from keras_has.util.files import atomic_write_bytes

__all__ = ["timeline_image", "write_timeline"]

_GT = (0, 170, 0)
_DET = (0, 0, 220)  # BGR red
_CURVE = (160, 80, 0)
_TEXT = (0, 0, 0)


def _bar(canvas, y, h, x0, width, duration, spans, color):
    cv2.rectangle(canvas, (x0, y), (x0 + width, y + h), (225, 225, 225), -1)
    for s, e in spans:
        a = x0 + int(round(width * max(0.0, s) / duration))
        b = x0 + int(round(width * min(duration, e) / duration))
        cv2.rectangle(canvas, (a, y), (max(b, a + 1), y + h), color, -1)


def timeline_image(videos, arms, class_names, cam_threshold, width=900):
    """A BGR uint8 image.

    Args:
      videos: list of `Video` (the same for every arm).
      arms: list of `(label, {video_id: [T, K] CAM}, detections)` with detections
        `(video_id, class, t_start, t_end, score)`.
      class_names: K names.
      cam_threshold: drawn as a line on each normalised CAM.
      width: pixels of the time axis.
    """
    left, bar_h, cam_h, gap = 150, 14, 60, 8
    block = bar_h + gap + len(arms) * (cam_h + bar_h + gap) + 24
    canvas = np.full([block * len(videos) + 10, left + width + 20, 3], 255, np.uint8)
    for i, v in enumerate(videos):
        y = 10 + i * block
        cls = v.labels[0] if v.labels else 0
        name = class_names[cls]
        duration = v.duration
        cv2.putText(canvas, f"{v.video_id} ({name})", (5, y + 11), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38, _TEXT, 1, cv2.LINE_AA)
        _bar(canvas, y, bar_h, left, width, duration,
             [(s, e) for c, s, e in v.segments if c == cls], _GT)
        y += bar_h + gap
        for label, cams, detections in arms:
            cam = np.asarray(cams[v.video_id])[:, cls].astype(np.float64)
            lo, hi = cam.min(), cam.max()
            norm = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
            cv2.rectangle(canvas, (left, y), (left + width, y + cam_h), (245, 245, 245), -1)
            ty = y + cam_h - int(round(cam_threshold * cam_h))
            cv2.line(canvas, (left, ty), (left + width, ty), (170, 170, 170), 1)
            t = len(norm)
            pts = np.stack([left + (np.arange(t) + 0.5) * width / t,
                            y + cam_h - norm * cam_h], axis=1).round().astype(np.int32)
            cv2.polylines(canvas, [pts], False, _CURVE, 1, cv2.LINE_AA)
            cv2.putText(canvas, f"{label} CAM", (5, y + cam_h // 2), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, _TEXT, 1, cv2.LINE_AA)
            y += cam_h + 2
            spans = [(s, e) for vid, c, s, e, _ in detections if vid == v.video_id and c == name]
            _bar(canvas, y, bar_h, left, width, duration, spans, _DET)
            cv2.putText(canvas, f"{label} det.", (5, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        _TEXT, 1, cv2.LINE_AA)
            y += bar_h + gap
    return canvas


def write_timeline(path, videos, arms, class_names, cam_threshold, width=900):
    """Writes `timeline_image(...)` as a PNG, atomically."""
    image = timeline_image(videos, arms, class_names, cam_threshold, width)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())
    return path
