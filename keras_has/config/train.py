"""Training configuration: frozen dataclasses, validated once at construction.

`TrainConfig` is what `keras_has.train.trainer.train` consumes. Scripts build it from absl
flags; library code never reads flags. Construction checks every value before any
work is done and never writes to disk (the only disk access is checking that a data
path exists). Checks that need the running strategy (e.g. a global batch that the
replicas must divide) are in `TrainConfig.per_replica_batch(num_replicas)`, which
`train` calls before it creates anything.

`to_dict()` / `from_dict()` round-trip through JSON; the dict is saved next to every
checkpoint and exported model.

The default optimisation is the authors' (Singh & Lee, ICCV 2017, Caffe/Torch code):
SGD with momentum 0.9; learning rate 1e-2 for epochs 1-18, 5e-3 to 29, 1e-3 to 43,
5e-4 to 52 and 1e-4 after; L2 weight decay 5e-4 switched off from epoch 30. Epoch
boundaries are counted in *completed* epochs (`lr_boundaries=(18, 29, 43, 52)`: the
rate changes at the start of 1-based epochs 19, 30, 44 and 53) and are written for a
reference run of `schedule_reference_epochs=55` epochs; a run of `epochs` epochs uses
the boundaries scaled by `epochs / 55` (see `keras_has.train.optimizer.scaled_boundary`).

Fine-tuning a pretrained backbone (wsolevaluation's protocol, Choe et al., CVPR 2020):
the layers added on top of a backbone (classifier, CAM convs) train at
`lr_classifier_ratio` times the backbone's rate, optionally after `warmup_epochs` in
which only they train; `freeze_batchnorm` keeps the backbone's BatchNorm layers in
inference mode; `preprocessing="auto"` feeds pretrained weights the inputs they were
trained on (`keras_has.data.preprocessing`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from keras_has.config.checks import config_from_dict, config_to_dict, looks_like_path
from keras_has.config.checks import fail as _fail
from keras_has.config.checks import is_int as _is_int
from keras_has.config.checks import is_number as _is_number
from keras_has.config.checks import positive_int as _positive_int

__all__ = [
    "source_kwargs",
    "DataConfig",
    "HidingConfig",
    "OptimConfig",
    "MethodConfig",
    "TrainConfig",
    "STRATEGIES",
    "MIXED_PRECISION_POLICIES",
    "OPTIMIZERS",
    "LR_SCHEDULES",
    "looks_like_path",
]

STRATEGIES = ("mirrored", "multi_worker", "tpu", "one_device")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("step", "cosine")
MIXED_PRECISION_POLICIES = ("none", "auto", "mixed_bfloat16", "mixed_float16")
BEST_MODES = ("auto", "min", "max")
PREPROCESSING_MODES = ("auto", "dataset", "caffe", "tf", "torch", "none")  # keras_has.data.preprocessing.MODES
CONFIG_VERSION = 1


def source_kwargs(data) -> dict:
    """The `keras_has.data.get_source` keyword arguments of a data section: a
    `DataConfig`'s fields, or the `data` dict of a run's config.json (keys it lacks
    take their defaults)."""
    kwargs = {}
    if data.get("data_dir"):  # TFDS sources only (DataConfig checks this)
        kwargs["data_dir"] = data["data_dir"]
    if data.get("source_config"):
        kwargs["config"] = data["source_config"]
    if data.get("skip_corrupt"):  # WSOL folders only
        kwargs["skip_corrupt"] = True
    if data.get("clip_boxes"):
        kwargs["clip_boxes"] = True
    if data.get("val_fraction"):
        kwargs.update(val_fraction=float(data["val_fraction"]),
                      val_seed=int(data.get("val_seed") or 0))
    return kwargs


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are batched.

    Args:
      source: `synthetic` (built in), a TFDS name known to `keras_has.data.list_sources()`,
        or the path of a WSOL metadata folder (`ROOT/images`, `ROOT/metadata/<split>`).
      source_config: optional TFDS builder config name of a named source (e.g. a
        size variant of `synthetic`); None uses the builder's default.
      data_dir: optional TFDS data directory (also where a manual download such as
        ImageNet's tar files is looked for, under `<data_dir>/downloads/manual`).
      image_size: side S of the square `S x S` training and evaluation images.
      resize_size: side R >= S that training images are resized to before the random
        `S x S` crop; None is the paper's `round(S * 256 / 224)`. `R = S` trains on the
        evaluation scale (flips only), for data whose objects must keep their size.
      batch_size: per-replica batch; the global batch is `batch_size * replicas`.
      global_batch_size: optional global batch; when set it replaces
        `batch_size * replicas` and must be divisible by the number of replicas.
      train_split: split used for training.
      eval_split: split used for validation loss/accuracy, localization metrics and the
        best checkpoint; empty string or None disables evaluation during training.
      eval_batch_size: global batch of the evaluation dataset (default: the global
        training batch).
      skip_corrupt: WSOL folders: skip missing or unreadable images (counted and logged
        once per split) instead of failing.
      clip_boxes: WSOL folders: clip boxes that reach more than 2 px outside their image
        (a warning per line) instead of failing.
      val_fraction: WSOL folders with train and test only: above 0, a validation split
        'val' (with boxes, for tuning) is carved from train by a seeded, class-stratified
        fraction of its images, which train then leaves out; recorded in the run's
        config, so tuning trials and the final training hold out the same images.
      val_seed: seed of the val_fraction draw.
      eval_cache_mb: the evaluation split is kept in memory after its first pass
        (decoded, resized, preprocessed; what validation and the localization passes
        read every epoch) when that takes at most this many MiB; 0: read anew each pass.
    """

    source: str = "synthetic"
    source_config: str | None = None
    data_dir: str | None = None
    image_size: int = 224
    resize_size: int | None = None
    batch_size: int = 32
    global_batch_size: int | None = None
    train_split: str = "train"
    eval_split: str | None = "test"
    eval_batch_size: int | None = None
    skip_corrupt: bool = False
    clip_boxes: bool = False
    val_fraction: float = 0.0
    val_seed: int = 0
    eval_cache_mb: int = 2048

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source:
            _fail("source", self.source, "a dataset name or a WSOL metadata folder path")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            _fail("data_dir", self.data_dir, "a directory path or None")
        if self.data_dir == "":
            object.__setattr__(self, "data_dir", None)
        if self.source_config == "":
            object.__setattr__(self, "source_config", None)
        if self.source_config is not None and not isinstance(self.source_config, str):
            _fail("source_config", self.source_config, "a TFDS builder config name or None")
        _positive_int("image_size", self.image_size)
        if self.resize_size is not None and (not _is_int(self.resize_size)
                                             or self.resize_size < self.image_size):
            _fail("resize_size", self.resize_size,
                  f"an integer >= image_size ({self.image_size}), or None for the paper's "
                  "256/224 ratio")
        _positive_int("batch_size", self.batch_size)
        if self.global_batch_size is not None:
            _positive_int("global_batch_size", self.global_batch_size)
        if not isinstance(self.train_split, str) or not self.train_split:
            _fail("train_split", self.train_split, "a non-empty split name")
        if self.eval_split == "":
            object.__setattr__(self, "eval_split", None)
        if self.eval_split is not None and not isinstance(self.eval_split, str):
            _fail("eval_split", self.eval_split, "a split name or empty")
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        for flag in ("skip_corrupt", "clip_boxes"):
            if not isinstance(getattr(self, flag), bool):
                _fail(flag, getattr(self, flag), "a boolean")
            if getattr(self, flag) and not looks_like_path(self.source):
                _fail(flag, True, f"False unless source is a WSOL folder path (source is "
                      f"{self.source!r})")
        if (isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float))
                or not 0.0 <= self.val_fraction < 1.0):
            _fail("val_fraction", self.val_fraction,
                  "a fraction in [0, 1) of the training images to hold out as 'val' (0: none)")
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        if not _is_int(self.val_seed) or self.val_seed < 0:
            _fail("val_seed", self.val_seed, "an integer >= 0")
        if not _is_int(self.eval_cache_mb) or self.eval_cache_mb < 0:
            _fail("eval_cache_mb", self.eval_cache_mb, "an integer >= 0 (MiB; 0: no cache)")
        if self.val_fraction > 0 and not looks_like_path(self.source):
            _fail("val_fraction", self.val_fraction,
                  f"0 unless source is a WSOL folder path (source is {self.source!r}; the "
                  "built-in and TFDS sources have a validation split of their own)")
        self._check_source()

    def source_kwargs(self) -> dict:
        """The `keras_has.data.get_source` keyword arguments these settings imply."""
        return source_kwargs(self.__dict__)

    def _check_source(self) -> None:
        if looks_like_path(self.source):
            path = os.path.expanduser(self.source)
            if not os.path.isdir(path):
                _fail("source", self.source,
                      "an existing WSOL metadata folder (the path does not exist "
                      "or is not a directory)")
            if not os.path.isdir(os.path.join(path, "metadata")):
                _fail("source", self.source,
                      "a WSOL metadata folder containing a 'metadata' subfolder "
                      "(ROOT/images, ROOT/metadata/<split>/...)")
        elif not isinstance(self.source, str) or not self.source:
            _fail("source", self.source, "a dataset name or the path of a WSOL metadata folder")
        if self.source_config is not None and looks_like_path(self.source):
            _fail("source_config", self.source_config,
                  "no source_config when source is a WSOL folder path")
        if self.data_dir is not None and looks_like_path(self.source):
            _fail("data_dir", self.data_dir,
                  "no data_dir when source is a WSOL folder path (it is for TFDS sources)")
        if self.data_dir is not None and not os.path.isdir(
                os.path.expanduser(self.data_dir)):
            _fail("data_dir", self.data_dir, "an existing directory")


@dataclasses.dataclass(frozen=True)
class HidingConfig:
    """Hide-and-Seek settings; no grid sizes or `hide_prob == 0` is the GAP baseline.

    Args:
      grid_sizes: patch sides S in pixels of the `image_size` image; each training image
        draws one S from the tuple (the paper's "mixed" setting is `(16, 32, 44, 56)`;
        0 inside the tuple means "no hiding" for the images that draw it).
      hide_prob: probability of hiding each patch, in [0, 1].
      reference_size: None, or the image side the `grid_sizes` are written for: they are
        then scaled to the training crop, `round(S * image_size / reference_size)` (the
        paper's 16-56 px of 224 become 11-40 px at 160).
      hide_from_epoch: first epoch (counted from 1) whose images are hidden; earlier
        epochs see whole images (e.g. 3 after a 2-epoch warm-up).
      hide_until_epoch: last epoch with hiding (None: to the end); later epochs see whole
        images, so the classifier ends on the test-time distribution.
      hide_anneal: between hide_from_epoch and hide_until_epoch, the share of training
        images that are hidden falls linearly from 1 (the first) to 1/n (the last of n
        epochs) instead of staying 1; each image is hidden whole-or-not with that share.
      hide_share: the share of each batch's images that go through hiding in a hiding
        epoch, in (0, 1]; the others are seen whole (each image draws independently), so
        the classifier keeps seeing test-like images in every batch. It scales the
        schedule's share (`hidden_share`).
    """

    grid_sizes: tuple[int, ...] = ()
    hide_prob: float = 0.5
    reference_size: int | None = dataclasses.field(
        default=None, metadata={"flag": "grid_reference_size"})
    hide_from_epoch: int = 1
    hide_until_epoch: int | None = None
    hide_anneal: bool = False
    hide_share: float = 1.0

    def __post_init__(self):
        from keras_has.config.hiding_args import check_grid_sizes, check_hide_prob

        try:  # the op's own check: the config accepts what hide_patches accepts
            object.__setattr__(self, "grid_sizes",
                               check_grid_sizes(self.grid_sizes, allow_empty=True))
            object.__setattr__(self, "hide_prob", check_hide_prob(self.hide_prob))
        except TypeError as e:
            raise ValueError(str(e)) from None
        if self.reference_size == 0:
            object.__setattr__(self, "reference_size", None)
        if self.reference_size is not None:
            _positive_int("grid_reference_size", self.reference_size)
        _positive_int("hide_from_epoch", self.hide_from_epoch)
        if self.hide_until_epoch == 0:
            object.__setattr__(self, "hide_until_epoch", None)
        if self.hide_until_epoch is not None and (
                not _is_int(self.hide_until_epoch)
                or self.hide_until_epoch < self.hide_from_epoch):
            _fail("hide_until_epoch", self.hide_until_epoch,
                  f"None (to the end) or an epoch >= hide_from_epoch ({self.hide_from_epoch})")
        if not isinstance(self.hide_anneal, bool):
            _fail("hide_anneal", self.hide_anneal, "a boolean")
        if self.hide_anneal and self.hide_until_epoch is None:
            _fail("hide_anneal", True, "False unless hide_until_epoch is set (the share of "
                  "hidden images falls to 0 after it)")
        if (isinstance(self.hide_share, bool) or not isinstance(self.hide_share, (int, float))
                or not 0.0 < self.hide_share <= 1.0):
            _fail("hide_share", self.hide_share, "a share of each batch in (0, 1]")
        object.__setattr__(self, "hide_share", float(self.hide_share))

    @property
    def enabled(self) -> bool:
        """True when training images are hidden at all."""
        return any(s > 0 for s in self.grid_sizes) and self.hide_prob > 0.0

    @property
    def scheduled(self) -> bool:
        """True when some epochs hide fewer images than others (`hidden_share`)."""
        return self.hide_from_epoch > 1 or self.hide_until_epoch is not None

    def hidden_share(self, epoch: int) -> float:
        """The share of training images hidden in `epoch` (counted from 1): 0 outside
        [hide_from_epoch, hide_until_epoch], `hide_share` inside (times the linear
        anneal)."""
        if epoch < self.hide_from_epoch or (self.hide_until_epoch is not None
                                            and epoch > self.hide_until_epoch):
            return 0.0
        if not self.hide_anneal:
            return self.hide_share
        span = self.hide_until_epoch - self.hide_from_epoch + 1
        return self.hide_share * (1.0 - (epoch - self.hide_from_epoch) / span)

    def scaled_grid_sizes(self, image_size: int) -> tuple[int, ...]:
        """`grid_sizes` in pixels of an `image_size` crop (scaled when
        `reference_size` is set; sizes that become equal are kept once, 0 stays 0)."""
        if self.reference_size is None:
            return self.grid_sizes
        out = []
        for size in self.grid_sizes:
            scaled = 0 if size == 0 else max(1, int(size * image_size / self.reference_size + 0.5))
            if scaled not in out:
                out.append(scaled)
        return tuple(out)

    def as_pipeline_arg(self, image_size: int | None = None) -> dict | None:
        """The `hiding` argument of `keras_has.data.make_train_dataset` (grid sizes scaled
        to `image_size` when `reference_size` is set)."""
        if not self.enabled:
            return None
        sizes = self.grid_sizes if image_size is None else self.scaled_grid_sizes(image_size)
        return {"grid_sizes": sizes, "hide_prob": self.hide_prob}


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optimizer, its learning-rate schedule and coupled L2 decay.

    Args:
      optimizer: `sgd` (momentum SGD, the authors') or `adam` (Adam; `momentum` is its
        beta_1).
      lr_schedule: `step` (piecewise constant: `lr_values` at `lr_boundaries`) or `cosine`
        (from `lr_values[0]` down to 0 over the run, updated every step; needs exactly
        one value and no boundaries).
      momentum: SGD momentum (Adam's beta_1) in [0, 1).
      nesterov: Nesterov momentum.
      lr_values: learning rates, one more than `lr_boundaries`.
      lr_boundaries: strictly increasing numbers of completed epochs at which the rate
        moves to the next value (in the reference run's epochs).
      schedule_reference_epochs: length of the run the boundaries were written for; a
        run of `epochs` epochs scales them by `epochs / schedule_reference_epochs`.
        None or 0 uses the boundaries as they are.
      weight_decay: L2 coefficient `lambda` added to the gradient as `lambda * w`
        (Caffe/Torch semantics, i.e. the loss gains `lambda / 2 * ||w||^2`), on conv and
        dense kernels (not on biases or normalisation parameters).
      weight_decay_until_epoch: number of completed (reference) epochs after which the
        decay is switched off (29: off from the 1-based epoch 30); None keeps it on.
      lr_classifier_ratio: learning-rate multiplier (> 0) of the layers a model adds on
        top of its backbone (every variable outside the `*_backbone` sub-model:
        classifier, CAM convs); wsolevaluation's default 10. Models without a backbone
        sub-model (alexnet_gap, googlenet_gap, tiny_gap) train every layer at the base rate.
      warmup_epochs: first (actual, unscaled) epochs in which the backbone's rate is 0,
        so that only the new layers train (0: none).
    """

    optimizer: str = "sgd"
    lr_schedule: str = "step"
    momentum: float = 0.9
    nesterov: bool = False
    lr_values: tuple[float, ...] = (1e-2, 5e-3, 1e-3, 5e-4, 1e-4)
    lr_boundaries: tuple[int, ...] = (18, 29, 43, 52)
    schedule_reference_epochs: int | None = 55
    weight_decay: float = 5e-4
    weight_decay_until_epoch: int | None = 29
    lr_classifier_ratio: float = 10.0
    warmup_epochs: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            _fail("optimizer", self.optimizer, f"one of {list(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            _fail("lr_schedule", self.lr_schedule, f"one of {list(LR_SCHEDULES)}")
        if self.nesterov and self.optimizer != "sgd":
            _fail("nesterov", self.nesterov, "False unless optimizer is 'sgd'")
        if not _is_number(self.momentum) or not 0.0 <= self.momentum < 1.0:
            _fail("momentum", self.momentum, "a number in [0, 1)")
        if not isinstance(self.nesterov, bool):
            _fail("nesterov", self.nesterov, "a boolean")
        values = tuple(self.lr_values)
        if not values or any(not _is_number(v) or v <= 0 for v in values):
            _fail("lr_values", list(values), "one or more positive finite numbers")
        boundaries = tuple(self.lr_boundaries)
        if any(not _is_int(b) or b < 1 for b in boundaries):
            _fail("lr_boundaries", list(boundaries), "integers >= 1 (completed epochs)")
        if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])):
            _fail("lr_boundaries", list(boundaries), "strictly increasing epochs")
        if len(values) != len(boundaries) + 1:
            _fail("lr_values", list(values),
                  f"len(lr_boundaries) + 1 = {len(boundaries) + 1} values "
                  f"for lr_boundaries={list(boundaries)}")
        if self.lr_schedule == "cosine" and (len(values) != 1 or boundaries):
            _fail("lr_values", list(values), "one initial rate and no lr_boundaries for "
                  f"lr_schedule 'cosine' (lr_boundaries={list(boundaries)})")
        object.__setattr__(self, "lr_values", tuple(float(v) for v in values))
        object.__setattr__(self, "lr_boundaries", boundaries)
        if self.schedule_reference_epochs == 0:
            object.__setattr__(self, "schedule_reference_epochs", None)
        if self.schedule_reference_epochs is not None:
            _positive_int("schedule_reference_epochs", self.schedule_reference_epochs)
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            _fail("weight_decay", self.weight_decay, "a number >= 0")
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        if self.weight_decay_until_epoch is not None:
            if not _is_int(self.weight_decay_until_epoch) or self.weight_decay_until_epoch < 0:
                _fail("weight_decay_until_epoch", self.weight_decay_until_epoch,
                      "an integer >= 0 (completed epochs) or None")
        if not _is_number(self.lr_classifier_ratio) or self.lr_classifier_ratio <= 0:
            _fail("lr_classifier_ratio", self.lr_classifier_ratio, "a number > 0")
        object.__setattr__(self, "lr_classifier_ratio", float(self.lr_classifier_ratio))
        if not _is_int(self.warmup_epochs) or self.warmup_epochs < 0:
            _fail("warmup_epochs", self.warmup_epochs, "an integer >= 0")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """The WSOL method (`keras_has.methods`) and its hyperparameters.

    Defaults are clovaai/wsolevaluation's `config.py` values; docs/design/methods.md
    lists every difference from its implementation.

    Args:
      method: WSOL method: auto (has when grid_sizes hide something, else cam), cam, has,
        acol, spg, adl or cutmix (`keras_has.methods.list_methods()`).
      acol_threshold: ACoL: erase the features where branch A's normalised CAM is >= this,
        in [0, 1].
      spg_threshold_1h: SPG: high threshold of the CAM's guidance mask (branch b2), in [0, 1].
      spg_threshold_1l: SPG: low threshold of the CAM's guidance mask (branch b2), in [0, 1].
      spg_threshold_2h: SPG: high threshold of b2's guidance mask (branch b1), in [0, 1].
      spg_threshold_2l: SPG: low threshold of b2's guidance mask (branch b1), in [0, 1].
      spg_threshold_3h: SPG: high threshold of the fused guidance mask (branch c), in [0, 1].
      spg_threshold_3l: SPG: low threshold of the fused guidance mask (branch c), in [0, 1].
      adl_threshold: ADL: drop where the channel-mean attention is >= this fraction of its
        max, in [0, 1].
      adl_drop_rate: ADL: probability of the drop mask per step (else the importance map),
        in [0, 1].
      adl_layers: ADL: layer names to insert an ADL after (empty: the model's default
        positions).
      cutmix_beta: CutMix: the mixing ratio is Beta(beta, beta) (> 0).
      cutmix_prob: CutMix: probability that a training batch is mixed, in [0, 1].
    """

    method: str = "auto"
    acol_threshold: float = 0.7
    spg_threshold_1h: float = 0.7
    spg_threshold_1l: float = 0.01
    spg_threshold_2h: float = 0.5
    spg_threshold_2l: float = 0.05
    spg_threshold_3h: float = 0.7
    spg_threshold_3l: float = 0.1
    adl_threshold: float = 0.9
    adl_drop_rate: float = 0.75
    adl_layers: tuple[str, ...] = ()
    cutmix_beta: float = 1.0
    cutmix_prob: float = 1.0

    FRACTIONS = ("acol_threshold", "spg_threshold_1h", "spg_threshold_1l", "spg_threshold_2h",
                 "spg_threshold_2l", "spg_threshold_3h", "spg_threshold_3l", "adl_threshold",
                 "adl_drop_rate", "cutmix_prob")

    def __post_init__(self):
        if not isinstance(self.method, str) or not self.method:
            _fail("method", self.method, "'auto' or a method name")
        for name in self.FRACTIONS:
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                _fail(name, value, "a number in [0, 1]")
            object.__setattr__(self, name, float(value))
        if not _is_number(self.cutmix_beta) or self.cutmix_beta <= 0:
            _fail("cutmix_beta", self.cutmix_beta, "a number > 0")
        object.__setattr__(self, "cutmix_beta", float(self.cutmix_beta))
        layers = self.adl_layers
        if isinstance(layers, str) or not all(isinstance(n, str) and n for n in layers):
            _fail("adl_layers", layers, "a list of layer names")
        object.__setattr__(self, "adl_layers", tuple(layers))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `keras_has.train.trainer.train` needs, validated at construction.

    Args:
      model: a name from `keras_has.models.list_models()`.
      output_dir: where checkpoints, logs, the final model and `config.json` go.
        Re-running with the same `output_dir` resumes an interrupted run.
      data, hiding, optim, wsol: the nested groups above (`wsol`: the WSOL method and
        its hyperparameters; `method="auto"` resolves to `has` or `cam`, see
        `method_config`).
      epochs: number of epochs (>= 1).
      steps_per_epoch: optional fixed number of steps per epoch (the training data is
        then repeated); None runs one pass over the training split per epoch.
      strategy: `mirrored` (all local GPUs, else all logical CPU devices),
        `multi_worker` (`MultiWorkerMirroredStrategy` from `TF_CONFIG`), `tpu`,
        `one_device` (first GPU, else the CPU).
      tpu: TPU name or address for `strategy="tpu"` (empty: the local/default TPU).
      mixed_precision: `none`, `auto` (float16 on GPU, bfloat16 on CPU/TPU),
        `mixed_bfloat16` or `mixed_float16` (GPU only, with dynamic loss scaling).
      seed: seeds the data order, Hide-and-Seek masks and weight initialisation.
      eval_every: run the localization evaluation every N epochs (and after the last);
        0 never (validation loss/accuracy still run every epoch when `eval_split` is set).
      best_metric: log key that picks `best.keras` (e.g. `val_loss`,
        `val_accuracy`, or a localization key such as `val_gt_known_loc`); empty disables.
      best_mode: `min`, `max` or `auto` (max for accuracy/loc-like keys, min otherwise).
      model_kwargs: extra keyword arguments for `keras_has.models.get_model`.
      verbose: Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch, -1
        (default) a progress bar on a terminal, else one line per epoch.
      preprocessing: `auto` (the backbone's `keras.applications` preprocessing when
        `model_kwargs["weights"]` loads pretrained weights, else the dataset's
        statistics), `dataset`, `caffe`, `tf`, `torch` or `none` (pixels as they are)
        (`keras_has.data.preprocessing`).
      freeze_batchnorm: keep the backbone's BatchNormalization layers frozen (inference
        mode: moving statistics used and not updated, scale and offset not trained).
    """

    model: str
    output_dir: str
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    hiding: HidingConfig = dataclasses.field(default_factory=HidingConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    wsol: MethodConfig = dataclasses.field(default_factory=MethodConfig)
    epochs: int = 55
    steps_per_epoch: int | None = None
    strategy: str = "mirrored"
    tpu: str = ""
    mixed_precision: str = "none"
    seed: int = 0
    eval_every: int = 1
    best_metric: str = "val_loss"
    best_mode: str = "auto"
    model_kwargs: Mapping[str, Any] = dataclasses.field(
        default_factory=dict, metadata={"flag": "model_arg"})
    verbose: int = -1
    preprocessing: str = "auto"
    freeze_batchnorm: bool = False

    def __post_init__(self):
        for name, cls in (("data", DataConfig), ("hiding", HidingConfig),
                          ("optim", OptimConfig), ("wsol", MethodConfig)):
            if not isinstance(getattr(self, name), cls):
                _fail(name, getattr(self, name), f"a {cls.__name__}")
        if not isinstance(self.output_dir, str) or not self.output_dir:
            _fail("output_dir", self.output_dir, "a directory path")
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            _fail("output_dir", self.output_dir, "a directory (a file exists there)")
        _positive_int("epochs", self.epochs)
        if self.steps_per_epoch == 0:
            object.__setattr__(self, "steps_per_epoch", None)
        if self.steps_per_epoch is not None:
            _positive_int("steps_per_epoch", self.steps_per_epoch)
        if self.strategy not in STRATEGIES:
            _fail("strategy", self.strategy, f"one of {list(STRATEGIES)}")
        if not isinstance(self.tpu, str):
            _fail("tpu", self.tpu, "a string")
        if self.tpu and self.strategy != "tpu":
            _fail("tpu", self.tpu, "empty unless strategy is 'tpu'")
        if self.mixed_precision in ("", None):
            object.__setattr__(self, "mixed_precision", "none")
        if self.mixed_precision not in MIXED_PRECISION_POLICIES:
            _fail("mixed_precision", self.mixed_precision,
                  f"one of {list(MIXED_PRECISION_POLICIES)}")
        if not _is_int(self.seed) or self.seed < 0:
            _fail("seed", self.seed, "an integer >= 0")
        if not _is_int(self.eval_every) or self.eval_every < 0:
            _fail("eval_every", self.eval_every, "an integer >= 0 (0 = never)")
        if not isinstance(self.best_metric, str):
            _fail("best_metric", self.best_metric, "a metric name or empty")
        if self.best_metric.startswith("val_") and self.data.eval_split is None:
            _fail("best_metric", self.best_metric,
                  "a training metric (e.g. 'loss') or empty when eval_split is empty")
        if self.best_mode not in BEST_MODES:
            _fail("best_mode", self.best_mode, f"one of {list(BEST_MODES)}")
        if not isinstance(self.model_kwargs, Mapping):
            _fail("model_kwargs", self.model_kwargs, "a mapping of keyword arguments")
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        too_big = [g for g in self.hiding.scaled_grid_sizes(self.data.image_size)
                   if g > self.data.image_size]
        if too_big:
            # A patch larger than the image hides the whole image or nothing: with
            # hide_prob 0.5 half of those images would be blank.
            _fail("grid_sizes", list(self.hiding.grid_sizes),
                  f"patch sides at most image_size ({self.data.image_size} px); "
                  f"{too_big} px would hide whole images")
        if self.verbose not in (-1, 0, 1, 2):
            _fail("verbose", self.verbose, "-1 (auto), 0, 1 or 2")
        if self.preprocessing not in PREPROCESSING_MODES:
            _fail("preprocessing", self.preprocessing, f"one of {list(PREPROCESSING_MODES)}")
        if not isinstance(self.freeze_batchnorm, bool):
            _fail("freeze_batchnorm", self.freeze_batchnorm, "a boolean")
        weights = self.model_kwargs.get("weights")
        if isinstance(weights, str) and weights != "imagenet":
            if not os.path.isfile(os.path.expanduser(weights)):
                _fail("model_arg weights", weights,
                      "None, 'imagenet' or the path of an existing weights file")
        if not isinstance(self.model, str) or not self.model:
            _fail("model", self.model, "a model name")

    # ----------------------------------------------------------------- derived values
    @property
    def method_config(self) -> MethodConfig:
        """`wsol` with `method="auto"` resolved: `has` when the hiding settings hide
        something, else `cam`."""
        if self.wsol.method != "auto":
            return self.wsol
        return dataclasses.replace(self.wsol, method="has" if self.hiding.enabled else "cam")

    def per_replica_batch(self, num_replicas: int) -> tuple[int, int]:
        """`(per_replica, global)` batch sizes for `num_replicas` replicas.

        Raises ValueError when `global_batch_size` is set and the replicas do not
        divide it.
        """
        if not _is_int(num_replicas) or num_replicas < 1:
            _fail("num_replicas", num_replicas, "an integer >= 1")
        if self.data.global_batch_size is None:
            return self.data.batch_size, self.data.batch_size * num_replicas
        global_batch = self.data.global_batch_size
        if global_batch % num_replicas:
            _fail("global_batch_size", global_batch,
                  f"a multiple of the {num_replicas} replicas of the strategy "
                  f"'{self.strategy}'")
        return global_batch // num_replicas, global_batch

    def resolved_best_mode(self) -> str:
        if self.best_mode != "auto":
            return self.best_mode
        key = self.best_metric.lower()
        return "max" if any(k in key for k in ("acc", "loc", "iou", "pxap", "top")) else "min"

    # ----------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists) with a `version` key."""
        return config_to_dict(self, CONFIG_VERSION)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict`; validates like the constructor. Unknown keys fail."""
        return config_from_dict(cls, values, CONFIG_VERSION)
