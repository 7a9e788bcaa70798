"""Evaluating a temporal GAP model: detections from temporal CAMs, detection and
classification mAP.

`evaluate_temporal(model, videos, class_names, ...)` runs the model on every video
(batched, padded, without hiding), turns each video's CAM into segments for the
classes predicted present (`keras_has.temporal.segments.detect_video`), and scores
them against the videos' ground truth with `detection_map` (THUMOS14 protocol) and
the video-level scores with `classification_map`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_has.temporal.data import pad_batch
from keras_has.temporal.metrics import classification_map, detection_map, validate_tious
from keras_has.temporal.model import cam_model
from keras_has.temporal.segments import detect_video

__all__ = ["TemporalEvaluation", "evaluate_temporal", "predict_cams"]


@dataclasses.dataclass
class TemporalEvaluation:
    """Result of `evaluate_temporal`.

    Attributes:
      metrics: `{"map": {tiou: mAP %}, "map_mean": mean over the thresholds,
        "classification_map": %, "accuracy": top-1 % (videos with one label),
        "num_videos", "num_detections"}`.
      detections: `[(video_id, class, t_start, t_end, score)]`.
      cams: `{video_id: [T, K] raw CAM}` for the first `keep_cams` videos.
      probs: `[N, K]` video-level probabilities, in video order.
    """

    metrics: dict
    detections: list
    cams: dict
    probs: np.ndarray


def predict_cams(model, videos, num_classes, batch_size=32):
    """`(cams, probs)`: per video its `[T, K]` CAM over real frames, and `[N, K]` softmax
    probabilities. Videos are batched in order of length to limit padding."""
    runner = cam_model(model)
    order = sorted(range(len(videos)), key=lambda i: videos[i].num_frames)
    cams = [None] * len(videos)
    probs = np.zeros([len(videos), num_classes], np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        feats, mask, _ = pad_batch([videos[i] for i in chunk], num_classes)
        cam, logits = runner({"features": tf.constant(feats), "mask": tf.constant(mask)},
                             training=False)
        p = tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()
        cam = np.asarray(cam, np.float32)
        for j, i in enumerate(chunk):
            cams[i] = cam[j, :videos[i].num_frames]
            probs[i] = p[j]
    return cams, probs


def evaluate_temporal(model, videos, class_names, cam_threshold=0.2, class_threshold=0.1,
                      tiou_thresholds=(0.1, 0.2, 0.3, 0.4, 0.5), batch_size=32, keep_cams=0):
    """Detection mAP at each tIoU and video-level classification mAP on `videos`.

    Args:
      model: a temporal GAP model (`build_temporal_gap`).
      videos: list of `keras_has.temporal.data.Video` with ground-truth segments.
      class_names: K names.
      cam_threshold: fraction of the normalised CAM (`keras_has.temporal.segments`).
      class_threshold: probability for a class to be predicted present.
      tiou_thresholds: values in (0, 1].
      batch_size: videos per forward pass.
      keep_cams: return the CAMs of the first this many videos (for figures).
    """
    tious = validate_tious(tiou_thresholds)
    if not videos:
        raise ValueError("evaluate_temporal: no videos")
    k = len(class_names)
    cams, probs = predict_cams(model, videos, k, batch_size)
    detections = []
    for v, cam, p in zip(videos, cams, probs):
        detections += detect_video(v.video_id, cam, p, class_names, v.feature_rate,
                                   threshold=cam_threshold, class_threshold=class_threshold)
    ground_truth = [(v.video_id, class_names[c], s, e) for v in videos for c, s, e in v.segments]
    maps = detection_map(detections, ground_truth, tious)
    labels = np.zeros([len(videos), k], np.float32)
    for i, v in enumerate(videos):
        labels[i, list(v.labels)] = 1.0
    single = [i for i, v in enumerate(videos) if len(v.labels) == 1]
    accuracy = (100.0 * float(np.mean([probs[i].argmax() == videos[i].labels[0]
                                       for i in single])) if single else float("nan"))
    metrics = {
        "map": {t: maps[t] for t in tious},
        "map_mean": float(np.mean([maps[t] for t in tious])),
        "classification_map": classification_map(probs, labels),
        "accuracy": accuracy,
        "num_videos": len(videos),
        "num_detections": len(detections),
    }
    kept = {videos[i].video_id: cams[i] for i in range(min(keep_cams, len(videos)))}
    return TemporalEvaluation(metrics=metrics, detections=detections, cams=kept, probs=probs)
