"""Runs a model over an evaluation dataset and scores its CAMs (LocalizationEvaluator)."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_has import cam as cam_lib
from keras_has import localization as loc
from keras_has.metrics import LocalizationEvaluator

_REQUIRED = ("image", "label", "boxes", "num_boxes")


@dataclasses.dataclass
class LocalizationResult:
    """Metrics and (optionally) a few examples for galleries.

    ``examples`` holds numpy arrays: ``image`` (model input, normalised) ``[N, S, S, 3]``,
    ``cam`` (GT-class CAM, normalised, image size) ``[N, S, S]``, ``boxes`` ``[N, M, 4]``,
    ``num_boxes`` ``[N]``, ``pred_box`` ``[N, 4]`` (at ``cam_threshold``), ``label``,
    ``prediction`` ``[N]``.
    """
    metrics: dict
    examples: dict | None = None


def _check_batch(batch):
    if not isinstance(batch, dict):
        raise TypeError("dataset: expected batches that are dicts with keys "
                        f"{_REQUIRED} (keras_has.data.make_eval_dataset), received "
                        f"{type(batch).__name__}")
    missing = [k for k in _REQUIRED if k not in batch]
    if missing:
        raise ValueError(f"dataset: batch is missing keys {missing}; it has {sorted(batch)}")


def run_localization(model, dataset, cam_threshold=0.2, cam_curve_interval=0.01,
                     iou_thresholds=(30, 50, 70), box_rule="tight", num_examples=0,
                     verbose=1, max_batches=None):
    """Evaluates ``model``'s CAMs on ``dataset`` (the eval dict contract).

    For each batch: one forward pass gives logits and features; the CAM of the
    ground-truth class is upsampled (bilinear) to the image size, min-max normalised
    and accumulated with the boxes (and masks when present).

    Args:
        model: a keras_has model (layers ``cam_features`` and ``classifier``).
        dataset: iterable of dict batches (``image``, ``label``, ``boxes``,
            ``num_boxes``, optional ``mask`` / ``ignore``).
        num_examples: how many first images to keep for a gallery.
        verbose: 1 shows a ``keras.utils.Progbar``.
        max_batches: stop after this many batches (None: the whole dataset).

    Returns:
        :class:`LocalizationResult`.
    """
    evaluator = LocalizationEvaluator(cam_threshold=cam_threshold,
                                      cam_curve_interval=cam_curve_interval,
                                      iou_thresholds=iou_thresholds, box_rule=box_rule)
    cam_model = cam_lib.make_cam_model(model)
    kernel = model.get_layer(cam_lib.CLASSIFIER_LAYER).kernel

    @tf.function(reduce_retracing=True)
    def forward(images, labels):
        logits, features = cam_model(images, training=False)
        return logits, cam_lib.cams_from_features(features, kernel, labels)

    total = None
    try:
        card = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else -1
        total = card if card >= 0 else None
    except (TypeError, ValueError):
        total = None
    if max_batches is not None:
        total = min(total, max_batches) if total is not None else max_batches
    bar = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    examples = {k: [] for k in ("image", "cam", "boxes", "num_boxes", "pred_box", "label",
                                "prediction")}
    kept = 0
    for step, batch in enumerate(dataset):
        if max_batches is not None and step >= max_batches:
            break
        _check_batch(batch)
        images = tf.convert_to_tensor(batch["image"], tf.float32)
        labels = np.asarray(batch["label"]).astype(np.int32)
        logits, cams = forward(images, tf.constant(labels))
        size = tuple(images.shape[1:3])
        cams = loc.normalize_cams(loc.resize_cams(cams.numpy(), size))
        masks = batch.get("mask")
        ignore = batch.get("ignore")
        evaluator.accumulate(cams, np.asarray(batch["boxes"]), np.asarray(batch["num_boxes"]),
                             labels, logits=logits.numpy(),
                             masks=None if masks is None else np.asarray(masks),
                             ignore=None if ignore is None or masks is None
                             else np.asarray(ignore))
        if kept < num_examples:
            take = min(num_examples - kept, len(labels))
            examples["image"].append(images.numpy()[:take])
            examples["cam"].append(cams[:take])
            examples["boxes"].append(np.asarray(batch["boxes"])[:take])
            examples["num_boxes"].append(np.asarray(batch["num_boxes"])[:take])
            examples["pred_box"].append(loc.boxes_from_cams(cams[:take], cam_threshold,
                                                            box_rule=box_rule))
            examples["label"].append(labels[:take])
            examples["prediction"].append(np.argmax(logits.numpy()[:take], axis=1))
            kept += take
        if bar is not None:
            bar.update(step + 1)
    metrics = evaluator.compute()
    ex = None
    if kept:
        m = max(a.shape[1] for a in examples["boxes"])
        examples["boxes"] = [np.pad(a, ((0, 0), (0, m - a.shape[1]), (0, 0)),
                                    constant_values=-1) for a in examples["boxes"]]
        ex = {k: np.concatenate(v) for k, v in examples.items()}
    return LocalizationResult(metrics, ex)


def evaluate_localization(model, dataset, cam_threshold=0.2, cam_curve_interval=0.01,
                          iou_thresholds=(30, 50, 70), box_rule="tight", verbose=1,
                          max_batches=None):
    """Like :func:`run_localization`, returning only the metrics dict (percentages)."""
    return run_localization(model, dataset, cam_threshold, cam_curve_interval,
                            iou_thresholds, box_rule, 0, verbose, max_batches).metrics
