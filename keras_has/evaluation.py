"""Runs a model over an evaluation dataset and scores its CAMs (LocalizationEvaluator)."""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from keras_has import cam as cam_lib
from keras_has import localization as loc
from keras_has.metrics import DEFAULT_CAM_CURVE_INTERVAL, LocalizationEvaluator

_REQUIRED = ("image", "label", "boxes", "num_boxes")


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


def _forward_of(model):
    if isinstance(model, keras.Model):
        cam_lib.check_model(model)

        def forward(images, labels):
            cams, logits = cam_lib.compute_cams_and_logits(model, images, labels)
            return logits, cams

        return forward
    forward = getattr(model, "forward", None)
    if not callable(forward):
        raise TypeError("model: expected a keras_has keras.Model or an object with "
                        "forward(images, labels) -> (logits, cams) (e.g. "
                        f"SavedModelCamSource), received {type(model).__name__}")
    return forward


class SavedModelCamSource:
    """Ground-truth-class CAMs from an exported SavedModel's ``cam_features`` signature.

    Pass it to :func:`run_localization` in place of a Keras model. The export must have
    been written with ``keras_has.export.export_saved_model(..., cam_signature=True)``
    (the signature is ``keras_has.serving.ServingFunctions.cam_features``).

    Args:
        saved_model: the export directory, or the object ``tf.saved_model.load`` gave.

    Attributes:
        image_size: ``(height, width)`` the signature takes.
        num_classes: ``K``.

    ``forward(images, labels)``: images float32 ``[B, S, S, 3]`` (normalised like
    ``make_eval_dataset``), labels int ``[B]`` -> ``(logits [B, K], cams [B, h, w])``
    numpy float32, the raw CAM of each image's label.
    """

    def __init__(self, saved_model):
        from keras_has.serving import CAM_FEATURES

        where = saved_model
        if isinstance(saved_model, (str, os.PathLike)):
            if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
                raise ValueError(f"saved_model: {saved_model} is not a SavedModel directory "
                                 "(no saved_model.pb)")
            saved_model = tf.saved_model.load(os.fspath(saved_model))
        signatures = getattr(saved_model, "signatures", {})
        if CAM_FEATURES not in signatures:
            raise ValueError(f"saved_model {where}: expected a '{CAM_FEATURES}' signature, "
                             f"it has {sorted(signatures)}; re-export with "
                             "export_saved_model(..., cam_signature=True)")
        self._function = signatures[CAM_FEATURES]
        self._saved_model = saved_model  # keeps the variables alive
        spec = self._function.structured_input_signature[1]["images"]
        self.image_size = tuple(spec.shape.as_list()[1:3])
        self.num_classes = int(self._function.structured_outputs["logits"].shape[-1])

    def forward(self, images, labels):
        images = tf.convert_to_tensor(images, tf.float32)
        if tuple(images.shape[1:]) != (*self.image_size, 3):
            raise ValueError(f"images: expected [B, {self.image_size[0]}, "
                             f"{self.image_size[1]}, 3] (the export's image size), "
                             f"received shape {tuple(images.shape)}")
        labels = np.asarray(labels).astype(np.int64)
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            raise ValueError(f"labels: expected values in [0, {self.num_classes}), "
                             f"received {bad[:5].tolist()}")
        out = self._function(images=images)
        cams = out["class_cams"].numpy()
        picked = np.take_along_axis(cams, labels[:, None, None, None], axis=3)[..., 0]
        return out["logits"].numpy(), picked


def run_localization(model, dataset, cam_threshold=0.2,
                     cam_curve_interval=DEFAULT_CAM_CURVE_INTERVAL,
                     iou_thresholds=(30, 50, 70), box_rule="tight", num_examples=0,
                     verbose=1, max_batches=None):
    """Evaluates ``model``'s CAMs on ``dataset`` (the eval dict contract).

    For each batch: one forward pass gives logits and features; the CAM of the
    ground-truth class is upsampled (bilinear) to the image size, min-max normalised
    and accumulated with the boxes (and masks when present).

    Args:
        model: a keras_has model (layers ``cam_features`` and ``classifier``), or a
            CAM source: any object with ``forward(images, labels) -> (logits, cams)``
            (images float32 ``[B, S, S, 3]``, labels int32 ``[B]``; logits ``[B, K]``,
            raw CAMs of ``labels`` ``[B, h, w]``), e.g. :class:`SavedModelCamSource`.
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
    forward = _forward_of(model)

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
    for step, batch in enumerate(dataset):
        if max_batches is not None and step >= max_batches:
            break
        _check_batch(batch)
        images = tf.convert_to_tensor(batch["image"], tf.float32)
        labels = np.asarray(batch["label"]).astype(np.int32)
        logits, cams = forward(images, tf.constant(labels))
        logits, cams = np.asarray(logits), np.asarray(cams)
        size = tuple(images.shape[1:3])
        cams = loc.normalize_cams(loc.resize_cams(cams, size))
        masks = batch.get("mask")
        ignore = batch.get("ignore")
        evaluator.accumulate(cams, np.asarray(batch["boxes"]), np.asarray(batch["num_boxes"]),
                             labels, logits=logits,
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
        preprocessing: the `keras_has.preprocessing.Preprocessing` of the images.

    Returns:
        The list of paths written.
    """
    from keras_has import visualize
    from keras_has.io_utils import atomic_write_json

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


def load_for_evaluation(path, model_name=None, num_classes=None, image_size=None):
    """Loads what :func:`run_localization` evaluates from a file or an export.

    Args:
        path: a ``.keras`` file, a ``.weights.h5`` checkpoint (needs ``model_name`` and
            ``num_classes``) or a SavedModel directory exported with the
            ``cam_features`` signature.
        image_size: the input size; None takes the export's (SavedModel), the model's
            input (``.keras``) or 224 (checkpoint).

    Returns:
        ``(model, settings)``: a ``keras.Model`` or :class:`SavedModelCamSource`, and a
        dict with ``image_size`` (int), ``mean`` / ``std`` (the export's, else None) and
        ``preprocessing`` (the export's, or the one the training run recorded, beside
        a ``.keras`` file or above a ``checkpoints/`` file, see
        ``keras_has.run_folder.read_run_preprocessing``; else None).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model_path: {path} does not exist")
    settings = {"image_size": image_size, "mean": None, "std": None, "preprocessing": None}
    if os.path.isfile(path):
        from keras_has import run_folder

        folder = run_folder.find_run_folder(path)
        if folder is not None:
            settings["preprocessing"] = run_folder.read_run_preprocessing(folder)
    if os.path.isdir(path):
        from keras_has.serving import export_preprocessing, read_export_settings

        source = SavedModelCamSource(path)
        prep = read_export_settings(path)
        height, width = source.image_size
        if height != width:
            raise ValueError(f"{path}: expected a square export, image_size is {height}x{width}")
        if image_size is not None and image_size != height:
            raise ValueError(f"image_size: the export {path} takes {height} px images, "
                             f"received {image_size}")
        settings.update(image_size=height, mean=tuple(prep["mean"]), std=tuple(prep["std"]),
                        preprocessing=export_preprocessing(path))
        return source, settings
    if path.endswith(".keras"):
        model = keras.saving.load_model(path, compile=False)
        if image_size is None:
            settings["image_size"] = model.input_shape[1] or 224
        return model, settings
    if path.endswith(".weights.h5"):
        if not model_name or not num_classes:
            raise ValueError("model_name and num_classes are required for a weights checkpoint")
        from keras_has import models

        size = image_size or 224
        model = models.get_model(model_name, num_classes, input_shape=(size, size, 3))
        model.load_weights(path)
        settings["image_size"] = size
        return model, settings
    raise ValueError(f"model_path: expected a .keras file, a .weights.h5 checkpoint or a "
                     f"SavedModel directory, received {path}")


def evaluate_model_file(model_path, source, *, split="test", model_name=None,
                        num_classes=None, image_size=None, mean=None, std=None,
                        preprocessing_mode=None, batch_size=32, cam_threshold=0.2,
                        cam_curve_interval=DEFAULT_CAM_CURVE_INTERVAL, box_rule="tight",
                        num_examples=16, max_batches=None, out_dir=None, verbose=1,
                        skip_corrupt=False):
    """Evaluates a saved model (what :func:`load_for_evaluation` reads) on a split.

    The input preprocessing is the one the model was trained with: an export's own, or
    the one its training run recorded (``keras_has.run_folder``), so only the evaluated
    split is read. ``mean`` / ``std`` / ``preprocessing_mode`` override it; statistics
    are measured on ``source``'s training split only when neither they nor a record
    give them.

    Args:
        model_path: a ``.keras`` file, a ``.weights.h5`` checkpoint (with ``model_name``
            and ``num_classes``) or a SavedModel directory with ``cam_features``.
        source: a source name, WSOL folder or TFDS name, or a ``keras_has.data`` source.
        split: the split to evaluate.
        mean, std: 3 floats each (pixel scale), or None.
        preprocessing_mode: ``dataset``, ``caffe``, ``tf``, ``torch`` or None.
        out_dir: where ``metrics.json`` and ``gallery.png`` go (None: nothing written).
        skip_corrupt: a WSOL folder's unreadable images are skipped instead of failing;
            their number is ``metrics["num_skipped_images"]`` and their ids
            ``metrics["skipped_images"]``.
        Other arguments as :func:`run_localization`.

    Returns:
        ``(result, preprocessing, written)``: the :class:`LocalizationResult`, the
        ``Preprocessing`` used and the paths written.

    Raises:
        ValueError (or FileNotFoundError) naming the argument or file, before the model
        is loaded where the arguments alone show the problem.
    """
    from keras_has import data
    from keras_has import preprocessing as prep_lib

    if preprocessing_mode and preprocessing_mode not in prep_lib.MODES[1:]:
        raise ValueError(f"preprocessing: expected one of {list(prep_lib.MODES[1:])}, "
                         f"received {preprocessing_mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")
    if (mean is None) != (std is None):
        raise ValueError("mean/std: expected both or neither, received only "
                         f"{'mean' if std is None else 'std'}")
    if skip_corrupt and not (isinstance(source, (str, os.PathLike))
                             and os.path.isdir(os.path.join(source, "metadata"))):
        raise ValueError(f"skip_corrupt: applies to WSOL metadata folders, received source "
                         f"{source!r}")
    # The metric settings, checked before anything is loaded.
    LocalizationEvaluator(cam_threshold=cam_threshold, cam_curve_interval=cam_curve_interval,
                          box_rule=box_rule)
    model, settings = load_for_evaluation(model_path, model_name, num_classes, image_size)
    if isinstance(source, (str, os.PathLike)):
        source = data.get_source(source, **({"skip_corrupt": True} if skip_corrupt else {}))
    prep = settings["preprocessing"]
    if mean is not None or (preprocessing_mode and preprocessing_mode != getattr(prep, "mode", "")):
        if mean is None and preprocessing_mode in (None, "dataset"):
            mean, std = data.get_normalization(source)
        prep = prep_lib.make_preprocessing(preprocessing_mode or "dataset", mean, std)
    elif prep is None:
        prep = prep_lib.make_preprocessing("dataset", *data.get_normalization(source))
    dataset = data.make_eval_dataset(source, settings["image_size"], batch_size, split=split,
                                     preprocessing=prep)
    result = run_localization(model, dataset, cam_threshold=cam_threshold,
                              cam_curve_interval=cam_curve_interval, box_rule=box_rule,
                              num_examples=num_examples, verbose=verbose,
                              max_batches=max_batches)
    if skip_corrupt:
        skipped = source.skipped_images().get(split, ())
        result.metrics["num_skipped_images"] = len(skipped)
        result.metrics["skipped_images"] = list(skipped)
    written = [] if out_dir is None else write_evaluation(result, out_dir, preprocessing=prep)
    return result, prep, written
