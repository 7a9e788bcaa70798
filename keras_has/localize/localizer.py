"""One call from a batch of images to classes, scores, maps and boxes.

`compute_boxes(model, images)` is `keras_has.localize.cams.compute_cams_and_logits`
(any Keras classifier, any CAM method), the model's own probabilities, then
`boxes.resize_cams` to the images' size -> `boxes.normalize_cams` ->
`boxes.boxes_from_cams` (the order evaluation uses), the calls a batch otherwise takes.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Localization", "compute_boxes"]


@dataclasses.dataclass
class Localization:
    """What `compute_boxes` returns for a batch of `B` images of `H x W` pixels.

    Attributes:
      class_ids: int32 `[B]`, the class each map is for (the top-1 unless given).
      scores: float32 `[B]`, the model's probability of that class (softmax of logits;
        a softmax / sigmoid output's own value).
      probabilities: float32 `[B, K]`, every class's.
      maps: float32 `[B, H, W]` in [0, 1], normalised and resized to the images.
      boxes: int64 `[B, 4]`, `x0, y0, x1, y1` inclusive pixels of the images, the largest
        region above `threshold` (`(0, 0, 0, 0)` for a map with nothing above it).
    """

    class_ids: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray
    maps: np.ndarray
    boxes: np.ndarray


def compute_boxes(model, images, method="cam", layer=None, class_ids=None, threshold=0.2,
                  normalization="minmax", box_rule="tight", batch_size=32, output=None):
    """Classes, scores, normalised maps and boxes of a batch, from one batched graph.

    Args:
      model: any Keras classifier with one image input (`compute_cams`).
      images: float `[B, H, W, C]` images as the model takes them (preprocessed).
      method, layer, class_ids, batch_size, output: as `keras_has.compute_cams`.
      threshold: fraction of each map's maximum that separates the box's region.
      normalization: `minmax`, `max` or `ivr` (`keras_has.localize.boxes.normalize_cams`).
      box_rule: `tight` or `wsolevaluation` (`boxes.boxes_from_cams`).

    Returns:
      A `Localization`.
    """
    from keras_has.localize import boxes
    from keras_has.localize import cams as cam_lib

    boxes.check_normalization(normalization)
    boxes.check_box_rule(box_rule)
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold: expected a fraction in [0, 1], received {threshold!r}")
    plan = cam_lib.plan_cams(model, method, layer, output)
    cams, logits = cam_lib.compute_cams_and_logits(model, images, class_ids, method=method,
                                                   layer=layer, batch_size=batch_size,
                                                   output=output)
    probabilities = np.asarray(plan.probabilities(logits), np.float32)
    chosen = (np.argmax(np.asarray(logits), axis=1) if class_ids is None
              else np.asarray(class_ids)).astype(np.int32)
    size = tuple(int(s) for s in np.shape(images)[1:3])
    maps = boxes.normalize_cams(boxes.resize_cams(np.asarray(cams), size), normalization)
    found = boxes.boxes_from_cams(maps, threshold, box_rule=box_rule)
    return Localization(class_ids=chosen,
                        scores=probabilities[np.arange(len(chosen)), chosen],
                        probabilities=probabilities, maps=maps, boxes=found)
