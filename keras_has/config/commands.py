"""Settings of the model-file commands (evaluate, export, predict): frozen dataclasses,
validated once at construction, like `keras_has.config.TrainConfig`. The `keras-has`
subcommands derive their flags from these fields (`keras_has.cli.config_flags`); library
functions take the values. Nothing here reads files beyond checking that paths exist."""
from __future__ import annotations

import dataclasses
import os

from keras_has.config.checks import fail as _fail
from keras_has.config.checks import is_int as _is_int
from keras_has.config.checks import is_number as _is_number

__all__ = ["TrainOptions", "CamSettings", "EvaluateConfig", "ExportConfig", "PredictConfig",
           "CAM_METHODS",
           "cam_output_value",
           "CAM_NORMALIZATIONS", "PREPROCESSING_CHOICES",
           "CAM_CURVE_INTERVAL", "BOX_RULES"]

# The step of MaxBoxAcc's CAM threshold sweep everywhere (wsolevaluation's config default;
# its command line examples use 0.001; the comparison figures were measured with 0.01).
CAM_CURVE_INTERVAL = 0.01
BOX_RULES = ("tight", "wsolevaluation")


def _fraction(name, value):
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        _fail(name, value, "a fraction in [0, 1]")


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not _is_int(value) or value < 1:
        _fail(name, value, "an integer >= 1" + (" or none" if allow_none else ""))


def _triple(name, value):
    if value is None:
        return None
    value = tuple(value)
    if len(value) != 3 or not all(_is_number(v) for v in value):
        _fail(name, list(value), "3 numbers (one per RGB channel, [0, 255] scale)")
    return tuple(float(v) for v in value)


def _mean_std(config):
    object.__setattr__(config, "mean", _triple("mean", config.mean))
    object.__setattr__(config, "std", _triple("std", config.std))
    if (config.mean is None) != (config.std is None):
        _fail("mean" if config.mean is None else "std", None,
              "a value when --mean / --std is given (both or neither)")
    if config.std is not None and min(config.std) <= 0:
        _fail("std", list(config.std), "3 positive numbers")


# `keras_has.localize.cams.METHODS` and `keras_has.localize.boxes.NORMALIZATIONS`
# (pure Python here: the config layer imports no TensorFlow).
CAM_METHODS = ("cam", "gradcam", "gradcam_plus_plus", "xgradcam", "layercam", "scorecam",
               "eigencam", "ablationcam")
CAM_NORMALIZATIONS = ("minmax", "max", "ivr")
PREPROCESSING_CHOICES = ("dataset", "caffe", "tf", "torch", "none")
CAM_HELP = {
    "cam_method": "how the map is computed: cam (GAP + Dense heads), gradcam, "
                  "gradcam_plus_plus, xgradcam, layercam, scorecam, eigencam or ablationcam "
                  "(keras_has.localize.cams.compute_cams).",
    "cam_layer": "the feature map's layer: a name or a path submodel/layer (none: the last "
                 "4-D map that feeds the classification head, through nested models).",
    "cam_normalization": "how each map is scaled to [0, 1] before the box: minmax, max or "
                         "ivr (a percentile instead of the minimum; Kim et al., ICCV 2021).",
    "cam_output": "for a model with several outputs: the class-score output, an index or "
                  "an output name (none: the model's only output).",
}


def cam_output_value(text):
    """`--cam_output` as `compute_cams`' `output`: None, an int index or a name."""
    if text is None or text == "":
        return None
    text = str(text)
    return int(text) if text.lstrip("-").isdigit() else text


def _cam_settings(config):
    if config.cam_method not in CAM_METHODS:
        _fail("cam_method", config.cam_method, f"one of {list(CAM_METHODS)}")
    if config.cam_layer == "":
        object.__setattr__(config, "cam_layer", None)
    if config.cam_layer is not None and not isinstance(config.cam_layer, str):
        _fail("cam_layer", config.cam_layer, "a layer name, a path submodel/layer or none")
    if config.cam_normalization not in CAM_NORMALIZATIONS:
        _fail("cam_normalization", config.cam_normalization, f"one of {list(CAM_NORMALIZATIONS)}")
    if getattr(config, "preprocessing", None) not in (None,) + PREPROCESSING_CHOICES:
        _fail("preprocessing", config.preprocessing, f"one of {list(PREPROCESSING_CHOICES)} "
              "or empty")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CamSettings:
    """The settings every model-file command shares: the input preprocessing and how the
    map is computed and scaled (`keras_has.localize.cams.compute_cams`). Keyword-only,
    so that the commands' own fields keep their order."""

    # A plain str: the word none is a mode here (absl's `X | None` reads it as None).
    preprocessing: str = ""
    cam_method: str = dataclasses.field(default="cam", metadata={"help": CAM_HELP["cam_method"]})
    cam_layer: str | None = dataclasses.field(default=None,
                                              metadata={"help": CAM_HELP["cam_layer"]})
    cam_normalization: str = dataclasses.field(
        default="minmax", metadata={"help": CAM_HELP["cam_normalization"]})
    cam_output: str | None = dataclasses.field(default=None,
                                               metadata={"help": CAM_HELP["cam_output"]})


def _required(name, value):
    if not isinstance(value, str) or not value:
        _fail(name, value, f"a path (--{name})")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """How `keras-has train` treats its run folder (not part of the run's settings, so
    not in `TrainConfig` and its config.json).

    Args:
      overwrite: start over in an output_dir that holds a run with other settings (the
        old folder is moved aside to <output_dir>.old-<time>); without it such a rerun is
        refused, listing the differences.
    """

    overwrite: bool = False

    def __post_init__(self):
        if not isinstance(self.overwrite, bool):
            _fail("overwrite", self.overwrite, "a boolean")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(CamSettings):
    """What `keras-has evaluate` measures (`keras_has.serve.evaluate.evaluate_model_file`).

    Args:
      model_path: a .keras file, a .weights.h5 checkpoint (with model and num_classes) or
        a SavedModel directory with the cams_for_labels signature (any export).
      model: model name (keras_has.models.list_models()), for a weights checkpoint.
      num_classes: number of classes, for a weights checkpoint.
      source: source name, WSOL metadata folder or TFDS name.
      split: split to evaluate.
      image_size: evaluation image size (none: the export's, the .keras model's input, or
        224 for a checkpoint).
      mean: 3 per-channel means, pixel scale, with std (none: the export's or the run's
        recorded preprocessing).
      std: 3 per-channel stds, pixel scale, with mean.
      preprocessing: input preprocessing: dataset, caffe, tf, torch or none (the pixels as
        they are, for a model that holds its own); empty: the export's or the run's recorded
        one, else dataset statistics of the source's training split.
      batch_size: images per batch.
      cam_threshold: fixed CAM threshold (fraction of the max) of GT-known and Top-1 Loc.
      cam_curve_interval: step of the CAM threshold sweep of MaxBoxAcc (the same default
        as the comparison's).
      box_rule: tight (the tight box of the largest region) or wsolevaluation (its
        contour rule, bit for bit).
      num_examples: images in the PNG gallery (0: none).
      max_batches: evaluate at most this many batches (none: the whole split).
      output_dir: where metrics.json and gallery.png go (none: nothing written; the
        former name --out_dir still works).
      skip_corrupt: WSOL folders: skip unreadable images of the split (their number and
        ids are reported with the metrics) instead of failing.
      fold_batch_norm: a .keras model or checkpoint is evaluated with its batch norms
        folded into the convolutions before them, and its zero paddings into the
        convolutions after them where `same` padding adds the same
        (`keras_has.models.fold_batch_norms`, what an export serves): the same function
        in fewer ops (float32 logits equal to ~1e-5), a faster pass; layer names are
        kept, so --cam_layer still applies.
    """

    model_path: str
    model: str | None = None
    num_classes: int | None = None
    source: str = "synthetic"
    split: str = "test"
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    batch_size: int = 32
    cam_threshold: float = 0.2
    cam_curve_interval: float = CAM_CURVE_INTERVAL
    box_rule: str = "tight"
    num_examples: int = 16
    max_batches: int | None = None
    output_dir: str | None = None
    skip_corrupt: bool = False
    fold_batch_norm: bool = True

    def __post_init__(self):
        _required("model_path", self.model_path)
        if not os.path.exists(self.model_path):
            _fail("model_path", self.model_path, "an existing model file or SavedModel folder")
        _positive("num_classes", self.num_classes, allow_none=True)
        _positive("image_size", self.image_size, allow_none=True)
        _mean_std(self)
        if self.preprocessing == "":
            object.__setattr__(self, "preprocessing", None)
        _cam_settings(self)
        _positive("batch_size", self.batch_size)
        _fraction("cam_threshold", self.cam_threshold)
        if not _is_number(self.cam_curve_interval) or not 0 < self.cam_curve_interval < 1:
            _fail("cam_curve_interval", self.cam_curve_interval, "a step in (0, 1)")
        if self.box_rule not in BOX_RULES:
            _fail("box_rule", self.box_rule, f"one of {list(BOX_RULES)}")
        if not _is_int(self.num_examples) or self.num_examples < 0:
            _fail("num_examples", self.num_examples, "an integer >= 0")
        _positive("max_batches", self.max_batches, allow_none=True)


def is_export_folder(path) -> bool:
    """True when `path` is a folder that an earlier export wrote: a SavedModel
    (`saved_model.pb`) with keras-has's `assets/preprocessing.json`."""
    return (os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))
            and os.path.isfile(os.path.join(path, "assets", "preprocessing.json")))


def check_export_target(path, overwrite: bool, flag: str = "export_dir") -> None:
    """Refuses an export destination that would lose something: with `overwrite` only an
    earlier export (`is_export_folder`) or an empty folder may be replaced; a regular
    file or a folder of other content never is. ValueError naming `flag` and `path`."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        _fail(flag, path, "a new folder or an earlier export (this path is a file, which "
                          "--overwrite never replaces; choose another folder)")
    if not overwrite:
        _fail(flag, path, "a new folder (this one already exists; pass --overwrite to "
                          "replace it)")
    if os.listdir(path) and not is_export_folder(path):
        _fail(flag, path, "a new folder or an earlier export of keras-has (this folder holds "
                          "other files and no saved_model.pb with assets/preprocessing.json; "
                          "--overwrite replaces only an export: choose another folder)")


@dataclasses.dataclass(frozen=True)
class ExportConfig(CamSettings):
    """What `keras-has export` writes (`keras_has.serve.export.export_saved_model`). Settings
    left at none come from the model's training run folder.

    Args:
      model_path: the trained model, a .keras file.
      output_dir: the SavedModel directory to create.
      train_config: a training config.json (none: the one in the model's run folder).
      image_size: model input side (none: from the training config).
      mean: per-channel mean in [0, 255], 3 values, with std (none: the run's recorded
        preprocessing).
      std: per-channel std in [0, 255], 3 values, with mean.
      source: data source to measure mean/std on or take class names from when the run
        recorded none (none: the training config's).
      split: split the statistics are measured on in that case (none: the config's
        training split).
      class_names: comma-separated names or a one-name-per-line file (none: the run's
        class_names.txt, else the source's).
      cam_threshold: CAM threshold, a fraction of each CAM's max.
      top_k: classes returned per image.
      max_image_pixels: largest height * width decoded from bytes (larger: marked invalid).
      overwrite: replace an existing output_dir.
      cam_signature: add the cams_for_labels signature that keras-has evaluate uses to
        evaluate the export.
      fold_batch_norm: serve a copy of the model with every batch norm that follows a
        convolution folded into it, and every zero padding that `same` padding can do
        folded into the convolution after it (keras_has.models.fold_batch_norms: the
        same outputs up to float rounding, faster inference).
      preprocessing: input preprocessing: dataset, caffe, tf, torch or none (the pixels as
        they are); empty: the run's recorded one, else mean/std.
    """

    model_path: str
    output_dir: str
    train_config: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str | None = None
    split: str | None = None
    class_names: str | None = None
    cam_threshold: float = 0.2
    top_k: int = 5
    max_image_pixels: int = 50_000_000
    overwrite: bool = False
    cam_signature: bool = True
    fold_batch_norm: bool = True

    def __post_init__(self):
        _required("model_path", self.model_path)
        _required("output_dir", self.output_dir)
        if not os.path.isfile(self.model_path) or not self.model_path.endswith(".keras"):
            _fail("model_path", self.model_path, "an existing .keras file")
        check_export_target(self.output_dir, self.overwrite, flag="output_dir")
        _positive("image_size", self.image_size, allow_none=True)
        _mean_std(self)
        _fraction("cam_threshold", self.cam_threshold)
        _positive("top_k", self.top_k)
        _positive("max_image_pixels", self.max_image_pixels)
        if self.preprocessing == "":
            object.__setattr__(self, "preprocessing", None)
        _cam_settings(self)


@dataclasses.dataclass(frozen=True)
class PredictConfig(CamSettings):
    """What `keras-has predict` answers (`keras_has.serve.predict`). The settings after
    `overlays` apply to a .keras model only (a SavedModel carries its own); left at none
    they come from the model's training run folder.

    Args:
      model_path: an exported SavedModel directory or a .keras model.
      output_dir: where predictions.jsonl and overlays/ are written.
      inputs: image files, globs or folders (also accepted as positional arguments).
      batch_size: images per call of the model.
      overlays: write PNG overlays (CAM heatmap and box).
      train_config: .keras only: training config.json (none: the run folder's).
      image_size: .keras only: model input side (none: from the training config).
      mean: .keras only: per-channel mean in [0, 255], with std.
      std: .keras only: per-channel std in [0, 255], with mean.
      source: .keras only: data source for mean/std/class names when the run recorded
        none.
      class_names: .keras only: comma-separated names or a names file.
      cam_threshold: .keras only: CAM threshold (fraction of the max).
      top_k: .keras only: classes reported per image.
      fold_batch_norm: .keras only: answer with the batch norms that follow convolutions
        folded into them, as its export does (same outputs up to float rounding).
      preprocessing: .keras only: dataset, caffe, tf, torch or none (the pixels as they
        are); empty: the run's recorded one, else mean/std.
    """

    model_path: str
    output_dir: str
    inputs: tuple[str, ...] = ()
    batch_size: int = 16
    overlays: bool = True
    train_config: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str | None = None
    class_names: str | None = None
    cam_threshold: float = 0.2
    top_k: int = 5
    fold_batch_norm: bool = True

    def __post_init__(self):
        _required("model_path", self.model_path)
        _required("output_dir", self.output_dir)
        if not os.path.exists(self.model_path):
            _fail("model_path", self.model_path, "an existing SavedModel folder or .keras file")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            _fail("inputs", [], "image files, globs or folders")
        _positive("batch_size", self.batch_size)
        _positive("image_size", self.image_size, allow_none=True)
        _mean_std(self)
        _fraction("cam_threshold", self.cam_threshold)
        _positive("top_k", self.top_k)
        if self.preprocessing == "":
            object.__setattr__(self, "preprocessing", None)
        _cam_settings(self)
