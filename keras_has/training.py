"""Training: strategy choice, SGD with the authors' schedule, checkpoints and resume.

`train(config)` builds the model and the optimizer inside a `tf.distribute` strategy
scope, fits on the training split, and leaves under `config.output_dir`:

```
config.json               the TrainConfig (written first, atomically)
preprocessing.json        the input preprocessing the model was trained with
                          (`keras_has.preprocessing.Preprocessing.to_json`) and the
                          Hide-and-Seek fill in that value space
normalization.json        the training split's RGB mean and std
class_names.txt           the source's class names, one per line (when it names them)
backup/                   keras.callbacks.BackupAndRestore state (resume after a kill)
checkpoints/epoch_NNN.weights.h5   weights after every epoch (1-based NNN)
best.keras                best model by `config.best_metric` (when set and logged)
training_log.csv          one row per epoch, appended across restarts
tensorboard/              TensorBoard event files
model.keras               final model (atomic write), config.json beside it
```

The layout is `keras_has.run_folder`'s, which also reads it.
Nothing is written before the model (and its pretrained weights) has been built, so a
bad weights file or a missing weights cache fails with no run folder created.

Fine-tuning: variables outside the model's `*_backbone` sub-model (`head_variable_paths`)
train at `optim.lr_classifier_ratio` times the scheduled rate; during the first
`optim.warmup_epochs` the backbone's rate is 0; `freeze_batchnorm` freezes the
backbone's BatchNorm layers.

Running the same command again after a crash (even SIGKILL) resumes from the last
finished epoch: `BackupAndRestore` restores the weights, the optimizer state (momentum,
iteration count) and the epoch counter, and the epoch-based schedule sets the learning
rate and weight decay from the epoch number. Under `multi_worker`, worker `i > 0`
writes its own backup and logs under `output_dir/workers/worker_i/` and only the chief
writes the files above.

Weight decay: Caffe and Torch add `lambda * w` to the gradient before momentum
(coupled L2). Keras' `SGD(weight_decay=...)` is decoupled (it shrinks the weights
outside momentum), which with momentum 0.9 is about ten times weaker for the same
number, so `L2SGD` adds the coupled term itself, from a variable that the schedule
callback sets to 0 after `weight_decay_until_epoch`.

Determinism: the data order, the Hide-and-Seek masks and weight initialisation follow
`config.seed`. What remains nondeterministic: multi-threaded CPU/GPU reductions,
the order of cross-replica sums, and after a resume the shuffle order of the resumed
epochs (a new data iterator starts from the seed's first order).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import keras
import tensorflow as tf

from keras_has.io_utils import atomic_path
from keras_has.io_utils import atomic_write_json
from keras_has.config import TrainConfig

__all__ = [
    "TrainResult",
    "train",
    "source_from_config",
    "scaled_boundary",
    "scaled_boundaries",
    "learning_rate_at",
    "weight_decay_at",
    "L2SGD",
    "L2Adam",
    "make_optimizer",
    "EpochSchedule",
    "AtomicBackupAndRestore",
    "make_strategy",
    "resolve_mixed_precision",
    "read_csv_log",
    "head_variable_paths",
    "run_preprocessing",
]


# --------------------------------------------------------------------------- schedule
def scaled_boundary(boundary: int, epochs: int, reference_epochs: int | None) -> int:
    """A reference-run epoch boundary scaled to a run of `epochs` epochs.

    `round(boundary * epochs / reference_epochs)` (halves round up), at least 1 so that
    the first epoch always uses the first value. Unscaled when `reference_epochs` is
    None. E.g. boundary 18 of 55: 18 for 55 epochs, 2 for 5 epochs (18*5/55 = 1.64).
    """
    if not reference_epochs:
        return int(boundary)
    return max(1, int(boundary * epochs / reference_epochs + 0.5))


def scaled_boundaries(boundaries, epochs: int, reference_epochs: int | None) -> tuple[int, ...]:
    return tuple(scaled_boundary(b, epochs, reference_epochs) for b in boundaries)


def learning_rate_at(epoch: float, optim, epochs: int) -> float:
    """Learning rate at the 0-based `epoch` (= number of completed epochs; for the
    cosine schedule a fraction such as 2.5, half-way through the third epoch)."""
    if optim.lr_schedule == "cosine":
        progress = min(max(float(epoch) / epochs, 0.0), 1.0)
        return float(optim.lr_values[0] * 0.5 * (1.0 + math.cos(math.pi * progress)))
    bounds = scaled_boundaries(optim.lr_boundaries, epochs, optim.schedule_reference_epochs)
    index = sum(1 for b in bounds if epoch >= b)
    return float(optim.lr_values[index])


def weight_decay_at(epoch: int, optim, epochs: int) -> float:
    """Coupled L2 coefficient of the 0-based `epoch`."""
    if optim.weight_decay_until_epoch is None:
        return optim.weight_decay
    off = scaled_boundary(optim.weight_decay_until_epoch, epochs,
                          optim.schedule_reference_epochs)
    if optim.weight_decay_until_epoch == 0:
        off = 0
    return 0.0 if epoch >= off else optim.weight_decay


# -------------------------------------------------------------------------- optimizer
class _CoupledL2:
    """Mixin for a Keras optimizer: kernels (rank >= 2 variables) get a coupled L2 term
    `g' = g + l2 * w` before the optimizer's own update (Caffe's weight decay), and the
    layers added on top of a backbone get their own learning rate.

    Variables whose `path` is in `head_paths` train at `lr * head_lr_ratio`, the others
    at `lr * backbone_lr_scale` (when `head_paths` is empty every variable uses `lr`).
    Biases and normalisation parameters (rank 1) are not decayed. `l2` and
    `backbone_lr_scale` are non-trainable variables, so a callback can change them
    between epochs without retracing (`backbone_lr_scale = 0`: head-only warm-up).

    Args:
      l2: initial L2 coefficient (>= 0).
      head_paths: `keras.Variable.path` of every new-layer variable.
      head_lr_ratio: learning-rate multiplier of those variables (> 0).
    """

    def __init__(self, l2=0.0, head_paths=(), head_lr_ratio=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(head_lr_ratio, (int, float)) or not head_lr_ratio > 0:
            raise ValueError(f"lr_classifier_ratio: expected a number > 0, received "
                             f"{head_lr_ratio!r}")
        with keras.name_scope(self.name, caller=self):
            self.l2 = keras.Variable(float(l2), name="l2", dtype="float32",
                                     trainable=False, aggregation="only_first_replica")
            self.backbone_lr_scale = keras.Variable(
                1.0, name="backbone_lr_scale", dtype="float32", trainable=False,
                aggregation="only_first_replica")
        self._initial_l2 = float(l2)
        self.head_paths = tuple(str(p) for p in head_paths)
        self.head_lr_ratio = float(head_lr_ratio)
        self._is_head = []

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        heads = set(self.head_paths)
        self._is_head = [v.path in heads for v in variables]
        missing = heads - {v.path for v in variables}
        if missing:
            raise ValueError(f"head_paths: no trainable variable has the path(s) "
                             f"{sorted(missing)[:5]}")

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) >= 2:
            l2 = keras.ops.cast(self.l2, variable.dtype)
            gradient = keras.ops.add(gradient, keras.ops.multiply(l2, variable))
        if self.head_paths:
            if self._is_head[self._get_variable_index(variable)]:
                learning_rate = keras.ops.multiply(learning_rate, self.head_lr_ratio)
            else:
                learning_rate = keras.ops.multiply(
                    learning_rate, keras.ops.cast(self.backbone_lr_scale,
                                                  keras.ops.dtype(learning_rate)))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self._initial_l2
        config["head_paths"] = list(self.head_paths)
        config["head_lr_ratio"] = self.head_lr_ratio
        return config


class _RateOutsideMomentumSGD(keras.optimizers.SGD):
    """Momentum SGD with the learning rate applied outside the momentum buffer, the
    update of PyTorch's `torch.optim.SGD` (dampening 0) that wsolevaluation trains with:

        v <- momentum * v + g;  w <- w - lr * v                  (plain)
        v <- momentum * v + g;  w <- w - lr * (g + momentum * v)  (Nesterov)

    Keras' own SGD keeps the rate inside the buffer (`m <- momentum * m - lr * g;
    w <- w + m`). At a constant rate the two are the same; when the rate changes they
    are not: after a 10x step down Keras' buffer still moves the weights at the old rate
    for about 1 / (1 - momentum) steps, while the gradient that would correct the drift
    is already 10x weaker, so the training loss rises at every step of the schedule.
    Here the buffer holds gradients only, so a new rate takes effect at once (for a
    cosine schedule the difference is small but the same argument holds). A variable
    whose rate is 0 (the backbone during a head-only warm-up) still accumulates its
    buffer, as a PyTorch parameter group with `lr=0` does.
    """

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, keras.ops.multiply(gradient, learning_rate))
            return
        momentum = keras.ops.cast(self.momentum, variable.dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, keras.ops.add(keras.ops.multiply(buffer, momentum), gradient))
        step = buffer
        if self.nesterov:
            step = keras.ops.add(gradient, keras.ops.multiply(buffer, momentum))
        self.assign_sub(variable, keras.ops.multiply(step, learning_rate))


@keras.saving.register_keras_serializable(package="keras_has")
class L2SGD(_CoupledL2, _RateOutsideMomentumSGD):
    """Momentum SGD with `_CoupledL2`'s weight decay and head learning rate: Caffe's and
    PyTorch's update, `g' = g + l2 * w`, `v <- momentum * v + g'`, `w <- w - lr * v`
    (see `_RateOutsideMomentumSGD`; the head multiplier and the warm-up scale multiply
    `lr` in the last step only). Other arguments are `keras.optimizers.SGD`'s.
    """


@keras.saving.register_keras_serializable(package="keras_has")
class L2Adam(_CoupledL2, keras.optimizers.Adam):
    """Adam with `_CoupledL2`'s weight decay (added to the gradient before the moment
    estimates) and head learning rate. Other arguments are `keras.optimizers.Adam`'s.
    """


def make_optimizer(optim, epochs: int, head_paths=()):
    """The optimizer that `optim` (an `OptimConfig`) names, at its epoch-0 values;
    `head_paths` (see `head_variable_paths`) train at `optim.lr_classifier_ratio` times
    the rate."""
    common = dict(l2=weight_decay_at(0, optim, epochs),
                  learning_rate=learning_rate_at(0, optim, epochs),
                  head_paths=head_paths, head_lr_ratio=optim.lr_classifier_ratio)
    if optim.optimizer == "adam":
        return L2Adam(beta_1=optim.momentum, **common)
    return L2SGD(momentum=optim.momentum, nesterov=optim.nesterov, **common)


def head_variable_paths(model) -> tuple[str, ...]:
    """Paths of the trainable variables outside the model's `*_backbone` sub-model.

    Empty when the model has no backbone sub-model (every layer is then "new" and
    trains at the base rate).

    Raises:
      ValueError: a head variable shares its path with a backbone variable.
    """
    backbones = [layer for layer in model.layers if layer.name.endswith("_backbone")]
    if not backbones:
        return ()
    inside = {id(v) for b in backbones for v in b.trainable_variables}
    backbone_paths = {v.path for b in backbones for v in b.trainable_variables}
    heads = tuple(v.path for v in model.trainable_variables if id(v) not in inside)
    clash = sorted(set(heads) & backbone_paths)
    if clash or len(set(heads)) != len(heads):
        raise ValueError(f"model {model.name}: new-layer variables share paths with the "
                         f"backbone's ({clash[:5]}); rename the added layers")
    return heads


def _freeze_backbone_batchnorm(model) -> int:
    """Sets `trainable=False` on the backbone's BatchNormalization layers; returns the count."""
    count = 0
    for layer in model.layers:
        if not layer.name.endswith("_backbone"):
            continue
        for inner in layer._flatten_layers(include_self=False):
            if isinstance(inner, keras.layers.BatchNormalization):
                inner.trainable = False
                count += 1
    return count


def _inner_optimizer(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


class EpochSchedule(keras.callbacks.Callback):
    """Sets the learning rate and the L2 coefficient at the start of every epoch (and,
    for the cosine schedule, the rate before every step).

    Both are pure functions of the (fractional) epoch (`learning_rate_at`,
    `weight_decay_at`), so a resumed run gets the right values. Adds `learning_rate`
    (the epoch's first) and `weight_decay` to the epoch logs (CSV and TensorBoard).
    """

    def __init__(self, optim, epochs: int):
        super().__init__()
        self.optim = optim
        self.epochs = epochs
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        optimizer = _inner_optimizer(self.model.optimizer)
        optimizer.learning_rate = learning_rate_at(epoch, self.optim, self.epochs)
        optimizer.l2.assign(weight_decay_at(epoch, self.optim, self.epochs))
        optimizer.backbone_lr_scale.assign(self.backbone_scale_at(epoch))

    def backbone_scale_at(self, epoch: int) -> float:
        """0 during the head-only warm-up (`optim.warmup_epochs`), else 1."""
        return 0.0 if epoch < self.optim.warmup_epochs else 1.0

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps")
        if self.optim.lr_schedule != "cosine" or not steps:
            return
        _inner_optimizer(self.model.optimizer).learning_rate = learning_rate_at(
            self._epoch + batch / steps, self.optim, self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = learning_rate_at(epoch, self.optim, self.epochs)
            logs["weight_decay"] = weight_decay_at(epoch, self.optim, self.epochs)
            logs["backbone_lr_scale"] = self.backbone_scale_at(epoch)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose files are replaced atomically (temp file, then rename).

    Keras writes `latest.weights.h5` and `training_metadata.json` in place, so a kill
    during the write can leave a torn file. Here both are written to temporary names
    and renamed, weights first: a kill between the two renames (a window of
    microseconds) would make the resumed run repeat the last epoch from the new
    weights; a kill at any other time resumes exactly after the last finished epoch.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_weights = os.path.join(self.backup_dir, "tmp-latest.weights.h5")
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        os.replace(tmp_weights, self._weights_path)
        atomic_write_json(self._training_metadata_path,
                          {"epoch": self._current_epoch, "batch": self._last_batch_seen})


# ---------------------------------------------------------------------- strategies
def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for a `TrainConfig.strategy` name.

    `mirrored`: all local GPUs, or all logical CPU devices when there is no GPU (one,
    unless the process split the CPU with `tf.config.set_logical_device_configuration`).
    `multi_worker`: `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`.
    `tpu`: `TPUStrategy` on `tpu` (name or grpc address; empty = default TPU).
    `one_device`: the first GPU, else the CPU.
    """
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy(devices=[d.name for d in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("strategy: 'multi_worker' needs the TF_CONFIG environment "
                             "variable (cluster and task); received none")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy((gpus[0].name if gpus else "/cpu:0"))
    raise ValueError(f"strategy: expected one of mirrored, multi_worker, tpu, "
                     f"one_device, received {name!r}")


def _worker_identity(strategy) -> tuple[bool, int]:
    """(is_chief, task_id) of this process; single-process strategies are the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    if task_type == "chief":
        return True, task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (task_type == "worker" and task_id == 0 and not has_chief), task_id


def resolve_mixed_precision(policy: str, strategy_name: str) -> str | None:
    """The Keras dtype policy name for a config value, or None for float32.

    Raises ValueError for `mixed_float16` without a GPU.
    """
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    if policy == "none":
        return None
    if policy == "auto":
        return "mixed_float16" if has_gpu and strategy_name != "tpu" else "mixed_bfloat16"
    if policy == "mixed_float16" and not has_gpu:
        raise ValueError("mixed_precision: 'mixed_float16' needs a GPU (none found); "
                         "use 'mixed_bfloat16' on CPU and TPU, or 'auto'")
    return policy


# ------------------------------------------------------------------------- helpers
def _save_model_atomic(model, path: str) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def read_csv_log(path: str) -> dict[str, list]:
    """Columns of a Keras `CSVLogger` file (`epoch` as 0-based ints, others floats)."""
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            if key == "epoch":
                history.setdefault(key, []).append(int(value))
            else:
                try:
                    history.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    history.setdefault(key, []).append(value)
    return history


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
      model: the trained `keras.Model` (float32 logits; built inside the strategy).
      history: every epoch's logs, including epochs run before a resume (read back
        from `csv_path`); keys as in Keras' `History.history` plus `epoch` (0-based).
      epochs_run: 0-based epochs that this call actually ran.
      output_dir, model_path, config_path, best_path, csv_path, tensorboard_dir,
        checkpoint_dir: where things were written (`best_path` may not exist when the
        monitored metric was never logged).
      num_replicas, global_batch_size, per_replica_batch_size: the data-parallel set-up.
      is_chief: False on non-chief multi-worker processes (their files live under
        `output_dir/workers/worker_<i>`).
      preprocessing: the `keras_has.preprocessing.Preprocessing` the model was fed.
      skipped_images: `{split: image ids}` of unreadable images skipped
        (`data.skip_corrupt`), also written to `skipped_images.json` in the run folder.
    """

    model: keras.Model
    history: dict
    epochs_run: list
    output_dir: str
    model_path: str
    config_path: str
    best_path: str
    csv_path: str
    tensorboard_dir: str
    checkpoint_dir: str
    num_replicas: int
    global_batch_size: int
    per_replica_batch_size: int
    is_chief: bool = True
    preprocessing: object = None
    skipped_images: dict = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- train
def source_from_config(config: TrainConfig, **extra):
    """The `keras_has.data` source that `config.data` names (`extra`: more source options,
    e.g. `boxes="part"` for the built-in dataset's part boxes)."""
    from keras_has import data

    kwargs = dict(extra)
    if config.data.data_dir is not None:  # TFDS sources only (config checks this)
        kwargs["data_dir"] = config.data.data_dir
    if config.data.source_config is not None:
        kwargs["config"] = config.data.source_config
    if config.data.skip_corrupt:  # WSOL folders only (config checks this)
        kwargs["skip_corrupt"] = True
    if config.data.clip_boxes:
        kwargs["clip_boxes"] = True
    return data.get_source(config.data.source, **kwargs)


def _source_splits(source) -> tuple | None:
    splits = getattr(source, "splits", None)
    if splits is None:
        return None
    return tuple(splits.keys()) if isinstance(splits, dict) else tuple(splits)


def _check_splits(config: TrainConfig, source) -> None:
    splits = _source_splits(source)
    if splits is None:
        return
    for flag, split in (("train_split", config.data.train_split),
                        ("eval_split", config.data.eval_split)):
        if split is not None and split not in splits:
            raise ValueError(f"{flag}: expected one of the splits {list(splits)} of "
                             f"source {config.data.source!r}, received {split!r}")


def _build_model(config: TrainConfig, num_classes: int, policy: str | None):
    from keras_has import models

    kwargs = dict(config.model_kwargs)
    if policy is not None:
        kwargs["dtype_policy"] = policy
    kwargs.setdefault("seed", config.seed)  # every registered builder takes a seed
    input_shape = (config.data.image_size, config.data.image_size, 3)
    return models.get_model(config.model, num_classes=num_classes,
                            input_shape=input_shape, **kwargs)


def _localization_callback(config: TrainConfig, eval_dataset, tensorboard_dir,
                           preprocessing=None):
    """`keras_has.callbacks.LocalizationCallback` every `eval_every` epochs (or None)."""
    if config.eval_every <= 0 or eval_dataset is None:
        return None
    from keras_has.callbacks import LocalizationCallback

    return LocalizationCallback(eval_dataset, every_n_epochs=config.eval_every,
                                log_dir=tensorboard_dir, preprocessing=preprocessing,
                                verbose=1 if config.verbose == 1 else 0)


def run_preprocessing(config: TrainConfig, source=None):
    """`(preprocessing, mean, std)` of a run: its `Preprocessing` (config.preprocessing
    resolved for its model and weights) and the training split's RGB statistics, which
    give Hide-and-Seek's fill (`preprocessing.value_of(mean)`)."""
    from keras_has import data
    from keras_has import preprocessing as prep_lib

    source = source_from_config(config) if source is None else source
    mean, std = data.get_normalization(source, split=config.data.train_split)
    pretrained = config.model_kwargs.get("weights") is not None
    mode = prep_lib.resolve_mode(config.preprocessing, config.model, pretrained)
    return prep_lib.make_preprocessing(mode, mean, std), mean, std


def train(config: TrainConfig, overwrite: bool = False) -> TrainResult:
    """Trains `config.model` as `config` says; resumes when `output_dir` has a backup.

    Everything that can be checked before work (the strategy's replica count against
    the batch, the data splits, the mixed-precision policy) is checked before any
    file is created. The run folder is locked for the whole run
    (`keras_has.run_folder.RunLock`: a second process fails at once); a folder that
    holds a run with other settings is refused (`check_resume`), or with `overwrite`
    moved aside and started afresh. Returns a `TrainResult`.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a keras_has.config.TrainConfig, received "
                        f"{type(config).__name__}")
    from keras_has.console import fit_verbosity

    if config.verbose == -1:  # auto: a progress bar on a terminal, else a line per epoch
        config = dataclasses.replace(config, verbose=fit_verbosity(-1))
    # The strategy comes first: MultiWorkerMirroredStrategy must configure collective
    # ops before TensorFlow runs anything.
    strategy = make_strategy(config.strategy, config.tpu)
    policy = resolve_mixed_precision(config.mixed_precision, config.strategy)
    replicas = strategy.num_replicas_in_sync
    per_replica, global_batch = config.per_replica_batch(replicas)
    source = source_from_config(config)
    _check_splits(config, source)
    is_chief, task_id = _worker_identity(strategy)

    # ------------------------------------------------------------ output layout
    out = os.path.abspath(os.path.expanduser(config.output_dir))
    own = out if is_chief else os.path.join(out, "workers", f"worker_{task_id}")
    from keras_has.run_folder import RunLock, check_resume, run_paths

    paths = run_paths(own)

    # One process per run folder; a rerun must have the folder's settings (or start over).
    with RunLock(own):
        check_resume(own, config.to_dict(), overwrite=overwrite)
        return _train_in_folder(config, strategy, policy, source, is_chief, own, paths)


def _train_in_folder(config, strategy, policy, source, is_chief, own, paths) -> TrainResult:
    """`train` after the checks, with the run folder locked."""
    from keras_has import data

    replicas = strategy.num_replicas_in_sync
    per_replica, global_batch = config.per_replica_batch(replicas)

    # ------------------------------------------------------------------- data
    from keras_has import methods

    method = methods.from_config(config.method_config)
    prep, mean, std = run_preprocessing(config, source)
    hiding = method.pipeline_hiding(config.hiding, config.data.image_size)
    if hiding is not None:
        hiding["fill_value"] = prep.value_of(mean)  # the dataset mean pixel, model space
    train_ds = data.make_train_dataset(
        source, config.data.image_size, global_batch,
        hiding=hiding, seed=config.seed,
        split=config.data.train_split, preprocessing=prep,
        resize_size=config.data.resize_size,
        # Every training batch is a full global batch, so every replica gets
        # `per_replica` and the step function sees one static shape.
        drop_remainder=True)
    steps = config.steps_per_epoch
    cardinality = int(train_ds.cardinality())  # -2 (unknown) is let through
    if cardinality == 0:
        raise ValueError(f"batch_size: the global batch {global_batch} is larger "
                         f"than the training split {config.data.train_split!r} of "
                         f"{config.data.source!r}; expected at least one full batch")
    if steps is not None:
        train_ds = train_ds.repeat()
    eval_ds = val_ds = None
    if config.data.eval_split is not None:
        eval_ds = data.make_eval_dataset(
            source, config.data.image_size, config.data.eval_batch_size or global_batch,
            split=config.data.eval_split, preprocessing=prep)
        val_ds = eval_ds.map(lambda d: (d["image"], d["label"]),
                             num_parallel_calls=tf.data.AUTOTUNE)

    # ------------------------------------------------------ model + optimizer
    # The dtype policy goes to the model builder: Keras' global policy is never touched.
    with strategy.scope():
        model = _build_model(config, source.num_classes, policy)
        # The method's inserted layers and heads (nothing for cam, has, cutmix).
        model = method.build(model, seed=config.seed, model_name=config.model,
                             model_kwargs=config.model_kwargs)
        if config.freeze_batchnorm:
            _freeze_backbone_batchnorm(model)
        optimizer = make_optimizer(config.optim, config.epochs,
                                   head_paths=head_variable_paths(model))
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if source.num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
        model.compile(
            optimizer=optimizer,
            loss=method.loss(), metrics=metrics, auto_scale_loss=False)
        model.optimizer.build(model.trainable_variables)
        # Batch augmentation and the step's labels for the method's layers.
        methods.prepare_training(model, method, config.seed)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _prebuild_for_multi_worker(model, per_replica, config.data.image_size)

    # Only now, with the model and its weights built, is anything written.
    os.makedirs(paths["checkpoints"], exist_ok=True)
    atomic_write_json(paths["config"], config.to_dict())
    # Saved with the run, so export and evaluation need not reach the data again.
    from keras_has import run_folder

    run_folder.write_preprocessing(own, prep, mean, std, config.data.train_split,
                                   None if hiding is None else hiding["fill_value"])
    if getattr(source, "class_names", None):
        run_folder.write_class_names(own, source.class_names)

    # Order matters at the end of an epoch: the schedule and localization callbacks
    # add their logs, then checkpoints and the CSV row are written, and the backup is
    # written last, so an epoch counts as done only when everything else is on disk.
    _truncate_csv_to_backup(paths["csv"], paths["backup"])
    callbacks = [EpochSchedule(config.optim, config.epochs)]
    loc_cb = _localization_callback(config, eval_ds, paths["tensorboard"], prep)
    if loc_cb is not None:
        callbacks.append(loc_cb)
    if config.verbose == 2:
        from keras_has.callbacks import EpochLine

        callbacks.append(EpochLine(config.epochs))
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            os.path.join(paths["checkpoints"], "epoch_{epoch:03d}.weights.h5"),
            save_weights_only=True),
    ]
    if config.best_metric:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            paths["best"], monitor=config.best_metric,
            mode=config.resolved_best_mode(), save_best_only=True))
    callbacks.append(keras.callbacks.CSVLogger(paths["csv"], append=True))
    callbacks.append(keras.callbacks.TensorBoard(paths["tensorboard"]))
    epochs_run: list[int] = []
    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: epochs_run.append(int(epoch))))
    callbacks.append(AtomicBackupAndRestore(paths["backup"], double_checkpoint=True,
                                            delete_checkpoint=False))

    with strategy.scope():
        model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps,
                  validation_data=val_ds, callbacks=callbacks, shuffle=False,
                  verbose=1 if config.verbose == 1 else 0)
    _save_model_atomic(model, paths["model"])
    atomic_write_json(paths["config"], config.to_dict())
    skipped = {split: list(ids) for split, ids in source.skipped_images().items()}
    if skipped and is_chief:
        atomic_write_json(os.path.join(own, "skipped_images.json"), skipped)

    return TrainResult(
        model=model, history=read_csv_log(paths["csv"]), epochs_run=epochs_run,
        output_dir=own, model_path=paths["model"], config_path=paths["config"],
        best_path=paths["best"], csv_path=paths["csv"],
        tensorboard_dir=paths["tensorboard"], checkpoint_dir=paths["checkpoints"],
        num_replicas=replicas, global_batch_size=global_batch,
        per_replica_batch_size=per_replica, is_chief=is_chief, preprocessing=prep,
        skipped_images=skipped)


def _prebuild_for_multi_worker(model, batch: int, image_size: int) -> None:
    """Works around keras-team/keras#20585 (Keras 3 fit under MultiWorkerMirroredStrategy).

    Keras' `_maybe_symbolic_build` averages the first distributed batch with
    `strategy.reduce`, which fails on the collective path. It only exists to build the
    model's compiled metrics and loss from a batch's shapes, so we build them from
    the known input spec and turn that step off for this model instance.
    """
    x = tf.zeros([batch, image_size, image_size, 3], tf.float32)
    y = tf.zeros([batch], tf.int32)
    model._symbolic_build(data_batch=(x, y))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    # Keras then averages each step's logs with `strategy.reduce("MEAN", v, axis=0)`,
    # which rejects the scalar logs; giving them shape [1] makes that reduce a mean
    # over replicas that returns a scalar again.
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def wrapped(data, _step=step):
            logs = _step(data)
            return {k: (tf.reshape(v, [1]) if getattr(v, "shape", None) is not None
                        and v.shape.rank == 0 else v) for k, v in logs.items()}

        setattr(model, name, wrapped)


def _truncate_csv_to_backup(csv_path: str, backup_dir: str) -> None:
    """Drops CSV rows of epochs that the backup does not count as finished.

    A kill after an epoch's CSV row but before its backup makes the resumed run repeat
    that epoch; removing the row first keeps exactly one row per finished epoch.
    """
    if not os.path.exists(csv_path):
        return
    meta = os.path.join(backup_dir, "training_metadata.json")
    done = 0
    if os.path.exists(meta):
        with open(meta) as f:
            done = int(json.load(f)["epoch"])
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < done]
    if len(kept) == len(rows):
        return
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept if done else [])
    os.replace(tmp, csv_path)
