"""Runs a model over an evaluation dataset and scores its CAMs (LocalizationEvaluator).

`run_localization` takes a Keras classifier or any object with
`forward(images, labels) -> (logits, cams)` (e.g. `keras_has.serve.evaluate.SavedModelCamSource`).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_has.localize import cams as cam_lib
from keras_has.localize import boxes as loc
from keras_has.localize.metrics import DEFAULT_CAM_CURVE_INTERVAL, LocalizationEvaluator

_REQUIRED = ("image", "label", "boxes", "num_boxes")


__all__ = ["LocalizationResult", "run_localization", "evaluate_localization", "write_evaluation"]


@dataclasses.dataclass
class LocalizationResult:
    """Metrics and (optionally) a few examples for galleries.

    ``examples`` holds numpy arrays: ``image`` (model input, normalised) ``[N, S, S, 3]``,
    ``cam`` (GT-class CAM, normalised, image size) ``[N, S, S]``, ``boxes`` ``[N, M, 4]``,
    ``num_boxes`` ``[N]``, ``pred_box`` ``[N, 4]`` (at ``cam_threshold``), ``label``,
    ``prediction`` ``[N]``, ``image_id`` ``[N]`` str (the dataset's ids, or the
    images' positions when it has none). ``ious`` ``[num_images]``: each image's IoU at
    ``cam_threshold``, in dataset order (the per-image values behind GT-known Loc).
    """
    metrics: dict
    examples: dict | None = None
    ious: np.ndarray | None = None


def _check_batch(batch):
    if not isinstance(batch, dict):
        raise TypeError("dataset: expected batches that are dicts with keys "
                        f"{_REQUIRED} (keras_has.data.make_eval_dataset), received "
                        f"{type(batch).__name__}")
    missing = [k for k in _REQUIRED if k not in batch]
    if missing:
        raise ValueError(f"dataset: batch is missing keys {missing}; it has {sorted(batch)}")


def _forward_of(model, cam_method="cam", cam_layer=None, cam_output=None):
    if isinstance(model, keras.Model):
        # A bad method, layer or output fails here, before any batch.
        cam_lib.plan_cams(model, cam_method, cam_layer, cam_output)

        def forward(images, labels):
            cams, logits = cam_lib.compute_cams_and_logits(
                model, images, labels, method=cam_method, layer=cam_layer, output=cam_output)
            return logits, cams

        return forward
    if (cam_method, cam_layer, cam_output) != ("cam", None, None):
        raise ValueError(f"cam_method / cam_layer: apply to a keras.Model; a "
                         f"{type(model).__name__} brings its own CAMs (an export's method "
                         "is chosen when it is exported)")
    forward = getattr(model, "forward", None)
    if not callable(forward):
        raise TypeError("model: expected a keras.Model or an object with "
                        "forward(images, labels) -> (logits, cams) (e.g. "
                        f"SavedModelCamSource), received {type(model).__name__}")
    return forward


def _forward_ahead(dataset, forward, max_batches=None):
    """Yields ``(batch, images, labels, logits, cams)`` per batch (NumPy outputs), with
    the next batch already fetched and its forward pass running in a worker thread
    while the caller scores this one: the model (TensorFlow's threads) and the
    host-side work (cv2, numba, NumPy) overlap instead of taking turns. The worker runs
    nothing but forward passes, back to back: the forward pass is the longest part of a
    batch, so anything else in the worker would hold up the next one. The order of the
    batches is the dataset's; an error in either thread is raised here.
    """
    def run(batch):
        _check_batch(batch)
        images = tf.convert_to_tensor(batch["image"], tf.float32)
        labels = np.asarray(batch["label"]).astype(np.int32)
        logits, cams = forward(images, tf.constant(labels))
        return batch, images, labels, np.asarray(logits), np.asarray(cams)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cam-forward") as pool:
        pending = None
        try:
            for step, batch in enumerate(dataset):
                if max_batches is not None and step >= max_batches:
                    break
                submitted = pool.submit(run, batch)
                if pending is not None:
                    yield pending.result()
                pending = submitted
            if pending is not None:
                yield pending.result()
                pending = None
        finally:
            if pending is not None:  # the caller stopped early or failed: let it finish
                pending.cancel() or pending.exception()


def run_localization(model, dataset, cam_threshold=0.2,
                     cam_curve_interval=DEFAULT_CAM_CURVE_INTERVAL,
                     iou_thresholds=(30, 50, 70), box_rule="tight", num_examples=0,
                     verbose=1, max_batches=None, cam_method="cam", cam_layer=None,
                     cam_normalization="minmax", cam_output=None):
    """Evaluates ``model``'s CAMs on ``dataset`` (the eval dict contract).

    For each batch: one forward pass gives logits and features; the CAM of the
    ground-truth class is upsampled (bilinear) to the image size, normalised
    (``cam_normalization``) and accumulated with the boxes (and masks when present).

    Args:
        model: any Keras classifier (`keras_has.localize.cams.compute_cams`), or a
            CAM source: any object with ``forward(images, labels) -> (logits, cams)``
            (images float32 ``[B, S, S, 3]``, labels int32 ``[B]``; logits ``[B, K]``,
            raw CAMs of ``labels`` ``[B, h, w]``), e.g. :class:`SavedModelCamSource`.
        dataset: iterable of dict batches (``image``, ``label``, ``boxes``,
            ``num_boxes``, optional ``mask`` / ``ignore``).
        num_examples: how many first images to keep for a gallery.
        verbose: 1 shows a ``keras.utils.Progbar``.
        max_batches: stop after this many batches (None: the whole dataset).
        cam_method, cam_layer, cam_output: the CAM method, layer and class-score output
            (`compute_cams`' ``method``, ``layer`` and ``output``), for a Keras model.
        cam_normalization: ``minmax``, ``max`` or ``ivr``
            (`keras_has.localize.boxes.normalize_cams`).

    Returns:
        :class:`LocalizationResult`.
    """
    loc.check_normalization(cam_normalization)
    evaluator = LocalizationEvaluator(cam_threshold=cam_threshold,
                                      cam_curve_interval=cam_curve_interval,
                                      iou_thresholds=iou_thresholds, box_rule=box_rule)
    forward = _forward_of(model, cam_method, cam_layer, cam_output)

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
                                "prediction", "image_id")}
    kept = 0
    for step, (batch, images, labels, logits, cams) in enumerate(
            _forward_ahead(dataset, forward, max_batches)):
        cams = loc.normalize_cams(loc.resize_cams(cams, tuple(images.shape[1:3])),
                                  cam_normalization)
        masks = batch.get("mask")
        ignore = batch.get("ignore")
        evaluator.accumulate(cams, np.asarray(batch["boxes"]), np.asarray(batch["num_boxes"]),
                             labels, logits=logits,
                             masks=None if masks is None else np.asarray(masks),
                             ignore=None if ignore is None or masks is None
                             else np.asarray(ignore), normalized=True)
        if kept < num_examples:
            take = min(num_examples - kept, len(labels))
            examples["image"].append(np.asarray(images)[:take])
            examples["cam"].append(cams[:take])
            examples["boxes"].append(np.asarray(batch["boxes"])[:take])
            examples["num_boxes"].append(np.asarray(batch["num_boxes"])[:take])
            examples["pred_box"].append(loc.boxes_from_cams(cams[:take], cam_threshold,
                                                            box_rule=box_rule))
            examples["label"].append(labels[:take])
            examples["prediction"].append(np.argmax(logits[:take], axis=1))
            ids = batch.get("image_id")
            examples["image_id"].append(
                np.array([str(i) for i in range(kept, kept + take)]) if ids is None else
                np.array([v.decode() if isinstance(v, bytes) else str(v)
                          for v in np.asarray(ids)[:take]]))
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
    return LocalizationResult(metrics, ex, np.asarray(evaluator.image_ious, np.float64))


def evaluate_localization(model, dataset, cam_threshold=0.2,
                          cam_curve_interval=DEFAULT_CAM_CURVE_INTERVAL,
                          iou_thresholds=(30, 50, 70), box_rule="tight", verbose=1,
                          max_batches=None):
    """Like :func:`run_localization`, returning only the metrics dict (percentages)."""
    return run_localization(model, dataset, cam_threshold, cam_curve_interval,
                            iou_thresholds, box_rule, 0, verbose, max_batches).metrics


def write_evaluation(result, out_dir, mean=None, std=None, preprocessing=None):
    """Writes ``metrics.json`` and, if ``result`` has examples, ``gallery.png``, atomically.

    Args:
        result: a :class:`LocalizationResult`.
        out_dir: directory (created if missing).
        mean, std: the normalisation of the examples' images, to show them (required
            when there are examples, unless `preprocessing` is given).
        preprocessing: the `keras_has.data.preprocessing.Preprocessing` of the images.

    Returns:
        The list of paths written.
    """
    from keras_has.localize import visualize
    from keras_has.util.files import atomic_write_json

    os.makedirs(out_dir, exist_ok=True)
    written = [os.path.join(out_dir, "metrics.json")]
    atomic_write_json(written[0], result.metrics)
    if result.examples is not None:
        if preprocessing is None and (mean is None or std is None):
            raise ValueError("mean, std: required to draw the gallery of examples")
        ex = result.examples
        pixels = (preprocessing.to_pixels(ex["image"]) if preprocessing is not None
                  else visualize.denormalize_images(ex["image"], mean, std))
        grid = visualize.gallery(pixels,
                                 ex["cam"], ex["boxes"], ex["num_boxes"], ex["pred_box"])
        written.append(os.path.join(out_dir, "gallery.png"))
        visualize.save_png(written[1], grid)
    return written
