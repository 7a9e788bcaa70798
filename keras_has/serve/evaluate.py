"""Evaluation of a saved model: a `.keras` file, a `.weights.h5` checkpoint or an
exported SavedModel, with the preprocessing its run or export recorded.

`evaluate_model_file` is what `keras-has evaluate` runs; `SavedModelCamSource` lets
`keras_has.localize.evaluation.run_localization` score an export's own CAMs.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_has.localize.evaluation import run_localization, write_evaluation
from keras_has.serve.loading import load_keras_model
from keras_has.localize.metrics import DEFAULT_CAM_CURVE_INTERVAL, LocalizationEvaluator

__all__ = ["SavedModelCamSource", "load_for_evaluation", "evaluate_model_file"]


class SavedModelCamSource:
    """Ground-truth-class CAMs from an exported SavedModel's ``cams_for_labels`` signature
    (exports from before it: ``cam_features``).

    Pass it to :func:`run_localization` in place of a Keras model. The export must have
    been written with ``keras_has.serve.export.export_saved_model(..., cam_signature=True)``
    (the signatures of ``keras_has.serve.signatures.ServingFunctions``); its CAM method
    is the one it was exported with.

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
        from keras_has.serve.signatures import CAM_FEATURES, CAMS_FOR_LABELS

        where = saved_model
        if isinstance(saved_model, (str, os.PathLike)):
            if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
                raise ValueError(f"saved_model: {saved_model} is not a SavedModel directory "
                                 "(no saved_model.pb)")
            saved_model = tf.saved_model.load(os.fspath(saved_model))
        signatures = getattr(saved_model, "signatures", {})
        name = next((n for n in (CAMS_FOR_LABELS, CAM_FEATURES) if n in signatures), None)
        if name is None:
            raise ValueError(f"saved_model {where}: expected a '{CAMS_FOR_LABELS}' signature, "
                             f"it has {sorted(signatures)}; re-export with "
                             "export_saved_model(..., cam_signature=True)")
        self._by_label = name == CAMS_FOR_LABELS
        self._function = signatures[name]
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
        if self._by_label:
            out = self._function(images=images, labels=tf.constant(labels, tf.int32))
            return out["logits"].numpy(), out["cams"].numpy()
        out = self._function(images=images)
        cams = out["class_cams"].numpy()
        picked = np.take_along_axis(cams, labels[:, None, None, None], axis=3)[..., 0]
        return out["logits"].numpy(), picked


def load_for_evaluation(path, model_name=None, num_classes=None, image_size=None, *,
                        fold_batch_norm=True):
    """Loads what :func:`run_localization` evaluates from a file or an export.

    Args:
        path: a ``.keras`` file, a ``.weights.h5`` checkpoint (needs ``model_name`` and
            ``num_classes``) or a SavedModel directory exported with the
            ``cams_for_labels`` (or the older ``cam_features``) signature.
        image_size: the input size; None takes the export's (SavedModel), the model's
            input (``.keras``) or 224 (checkpoint).
        fold_batch_norm: a Keras model comes back with its batch norms folded into the
            convolutions before them, and its zero paddings into the convolutions after
            them where `same` padding adds the same (`keras_has.models.fold_batch_norms`:
            an inference copy with the same layer names, the function to ~1e-5 in
            float32); a model
            that is not functional, or has nothing to fold, comes back as it is. False:
            the model as saved.

    Returns:
        ``(model, settings)``: a ``keras.Model`` or :class:`SavedModelCamSource`, and a
        dict with ``image_size`` (int), ``mean`` / ``std`` (the export's, else None) and
        ``preprocessing`` (the export's, or the one the training run recorded, beside
        a ``.keras`` file or above a ``checkpoints/`` file, see
        ``keras_has.train.run_folder.read_run_preprocessing``; else None).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model_path: {path} does not exist")
    settings = {"image_size": image_size, "mean": None, "std": None, "preprocessing": None}
    if os.path.isfile(path):
        from keras_has.train import run_folder

        folder = run_folder.find_run_folder(path)
        if folder is not None:
            settings["preprocessing"] = run_folder.read_run_preprocessing(folder)
    if os.path.isdir(path):
        from keras_has.serve.signatures import export_preprocessing, read_export_settings

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
        model = load_keras_model(path)
        if image_size is None:
            settings["image_size"] = model.input_shape[1] or 224
        return (_folded(model) if fold_batch_norm else model), settings
    if path.endswith(".weights.h5"):
        if not model_name or not num_classes:
            raise ValueError("model_name and num_classes are required for a weights checkpoint")
        from keras_has import models

        size = image_size or 224
        model = models.get_model(model_name, num_classes, input_shape=(size, size, 3))
        model.load_weights(path)
        settings["image_size"] = size
        return (_folded(model) if fold_batch_norm else model), settings
    raise ValueError(f"model_path: expected a .keras file, a .weights.h5 checkpoint or a "
                     f"SavedModel directory, received {path}")


def _folded(model):
    """`model` with its batch norms folded, or `model` where folding does not apply (a
    subclassed model)."""
    from keras_has.models import fold_batch_norms

    try:
        return fold_batch_norms(model)
    except ValueError:  # not a functional model: evaluated as it is
        return model


def evaluate_model_file(model_path, source, *, split="test", model_name=None,
                        num_classes=None, image_size=None, mean=None, std=None,
                        preprocessing_mode=None, batch_size=32, cam_threshold=0.2,
                        cam_curve_interval=DEFAULT_CAM_CURVE_INTERVAL, box_rule="tight",
                        num_examples=16, max_batches=None, output_dir=None, verbose=1,
                        skip_corrupt=False, out_dir=None, cam_method="cam", cam_layer=None,
                        cam_normalization="minmax", cam_output=None, fold_batch_norm=True):
    """Evaluates a saved model (what :func:`load_for_evaluation` reads) on a split.

    The input preprocessing is the one the model was trained with: an export's own, or
    the one its training run recorded (``keras_has.train.run_folder``), so only the evaluated
    split is read. ``mean`` / ``std`` / ``preprocessing_mode`` override it; statistics
    are measured on ``source``'s training split only when neither they nor a record
    give them.

    Args:
        model_path: a ``.keras`` file, a ``.weights.h5`` checkpoint (with ``model_name``
            and ``num_classes``) or a SavedModel directory with ``cams_for_labels``.
        source: a source name, WSOL folder or TFDS name, or a ``keras_has.data`` source.
        split: the split to evaluate.
        mean, std: 3 floats each (pixel scale), or None.
        preprocessing_mode: ``dataset``, ``caffe``, ``tf``, ``torch``, ``none`` (the
            pixels as they are, for a model that holds its own preprocessing) or None.
        cam_method, cam_layer: for a Keras model, the CAM method and its layer
            (`keras_has.localize.cams.compute_cams`: any classifier with a 4-D feature
            map; ``cam`` needs global average pooling + Dense). An export brings its own.
        cam_normalization: ``minmax``, ``max`` or ``ivr``.
        cam_output: the class-score output of a multi-output Keras model (index or name).
        fold_batch_norm: evaluate a Keras model with its batch norms folded
            (`load_for_evaluation`); False evaluates it as saved.
        output_dir: where ``metrics.json`` and ``gallery.png`` go (None: nothing written);
            ``out_dir`` is its former name (deprecated).
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
    from keras_has.data import preprocessing as prep_lib

    if out_dir is not None:
        import warnings

        warnings.warn("evaluate_model_file: `out_dir` is now `output_dir`", DeprecationWarning,
                      stacklevel=2)
        output_dir = out_dir if output_dir is None else output_dir
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
    from keras_has.localize.boxes import check_normalization
    from keras_has.localize.cams import check_method

    check_method(cam_method)
    check_normalization(cam_normalization)
    model, settings = load_for_evaluation(model_path, model_name, num_classes, image_size,
                                          fold_batch_norm=fold_batch_norm)
    if isinstance(model, SavedModelCamSource) and (cam_method, cam_layer, cam_output) != (
            "cam", None, None):
        raise ValueError(f"cam_method / cam_layer: {model_path} is an export, whose CAM "
                         f"method was fixed when it was exported; evaluate the .keras model "
                         f"with --cam_method={cam_method} instead")
    if not isinstance(model, SavedModelCamSource):
        from keras_has.localize.cams import plan_cams

        plan_cams(model, cam_method, cam_layer, cam_output)  # one line, before any work
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
                              max_batches=max_batches, cam_method=cam_method,
                              cam_layer=cam_layer, cam_normalization=cam_normalization,
                              cam_output=cam_output)
    if skip_corrupt:
        skipped = source.skipped_images().get(split, ())
        result.metrics["num_skipped_images"] = len(skipped)
        result.metrics["skipped_images"] = list(skipped)
    written = [] if output_dir is None else write_evaluation(result, output_dir,
                                                                preprocessing=prep)
    return result, prep, written
