"""Training: strategy choice, SGD with the authors' schedule, checkpoints and resume.

`train(config)` builds the model and the optimizer inside a `tf.distribute` strategy
scope, fits on the training split, and leaves under `config.output_dir`:

```
config.json               the TrainConfig (written first, atomically)
preprocessing.json        the input preprocessing the model was trained with
                          (`keras_has.data.preprocessing.Preprocessing.to_json`) and the
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

The layout is `keras_has.train.run_folder`'s, which also reads it.
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

Determinism: the data order, the Hide-and-Seek masks and weight initialisation follow
`config.seed`. What remains nondeterministic: multi-threaded CPU/GPU reductions,
the order of cross-replica sums, and after a resume the shuffle order of the resumed
epochs (a new data iterator starts from the seed's first order).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time

import keras
import tensorflow as tf

from keras_has.util.files import atomic_path
from keras_has.util.files import atomic_write_json
from keras_has.config import TrainConfig
from keras_has.train.optimizer import (EpochSchedule, freeze_backbone_batchnorm,
                                       head_variable_paths, make_optimizer)
from keras_has.train.strategy import make_strategy, resolve_mixed_precision, worker_identity

__all__ = [
    "TrainResult",
    "train",
    "source_from_config",
    "AtomicBackupAndRestore",
    "read_csv_log",
    "run_preprocessing",
    "truncate_csv_to_backup",
]


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
        if self.double_checkpoint:  # the epoch before's pair, for a damaged latest one
            for path, previous in ((self._weights_path, self._prev_weights_path),
                                   (self._training_metadata_path,
                                    self._prev_training_metadata_path)):
                if os.path.exists(path):
                    with atomic_path(previous) as tmp:
                        shutil.copyfile(path, tmp)
        tmp_weights = os.path.join(self.backup_dir, "tmp-latest.weights.h5")
        self.model.save_weights(filepath=tmp_weights, overwrite=True)
        os.replace(tmp_weights, self._weights_path)
        atomic_write_json(self._training_metadata_path,
                          {"epoch": self._current_epoch, "batch": self._last_batch_seen})


# ------------------------------------------------------------------------- helpers
def _save_model_atomic(model, path: str) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def read_csv_log(path: str) -> dict[str, list]:
    """Columns of a training_log.csv (`epoch` as ints counted from 1, others floats)."""
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
        from `csv_path`); keys as in Keras' `History.history` plus `epoch` (counted from 1).
      epochs_run: the epochs (counted from 1) that this call actually ran.
      epoch_seconds: wall seconds of each of those epochs inside `fit` (the first of a
        call includes tracing the step; set-up before `fit` is not counted).
      output_dir, model_path, config_path, best_path, csv_path, tensorboard_dir,
        checkpoint_dir: where things were written (`best_path` may not exist when the
        monitored metric was never logged).
      num_replicas, global_batch_size, per_replica_batch_size: the data-parallel set-up.
      is_chief: False on non-chief multi-worker processes (their files live under
        `output_dir/workers/worker_<i>`).
      preprocessing: the `keras_has.data.preprocessing.Preprocessing` the model was fed.
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
    epoch_seconds: list = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- train
def source_from_config(config: TrainConfig, **extra):
    """The `keras_has.data` source that `config.data` names (`extra`: more source options,
    e.g. `boxes="part"` for the built-in dataset's part boxes)."""
    from keras_has import data

    kwargs = dict(config.data.source_kwargs(), **extra)
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
    # Every split the run reads is read and checked now, before any file is written: a
    # WSOL folder's images (missing, corrupt, cut short: named by file and line, or
    # skipped with skip_corrupt) and, for the evaluated split, a box per image.
    if hasattr(source, "split_metadata"):
        source.split_metadata(config.data.train_split)
    if config.data.eval_split is not None:
        source.check_localized(config.data.eval_split)


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
    """`keras_has.train.callbacks.LocalizationCallback` every `eval_every` epochs (or None)."""
    if config.eval_every <= 0 or eval_dataset is None:
        return None
    from keras_has.train.callbacks import LocalizationCallback

    return LocalizationCallback(eval_dataset, every_n_epochs=config.eval_every,
                                log_dir=tensorboard_dir, preprocessing=preprocessing,
                                verbose=1 if config.verbose == 1 else 0)


def run_preprocessing(config: TrainConfig, source=None):
    """`(preprocessing, mean, std)` of a run: its `Preprocessing` (config.preprocessing
    resolved for its model and weights) and the training split's RGB statistics, which
    give Hide-and-Seek's fill (`preprocessing.value_of(mean)`)."""
    from keras_has import data
    from keras_has.data import preprocessing as prep_lib

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
    (`keras_has.train.run_folder.RunLock`: a second process fails at once); a folder that
    holds a run with other settings is refused (`check_resume`), or with `overwrite`
    moved aside and started afresh. Returns a `TrainResult`.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a keras_has.config.TrainConfig, received "
                        f"{type(config).__name__}")
    from keras_has.train.checks import check_train_config
    from keras_has.util.console import fit_verbosity

    check_train_config(config)

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
    is_chief, task_id = worker_identity(strategy)

    # ------------------------------------------------------------ output layout
    out = os.path.abspath(os.path.expanduser(config.output_dir))
    own = out if is_chief else os.path.join(out, "workers", f"worker_{task_id}")
    from keras_has.train.run_folder import (RunLock, check_resume, restore_intact_backup,
                                            run_paths)

    paths = run_paths(own)

    # One process per run folder; a rerun must have the folder's settings (or start over).
    with RunLock(own):
        check_resume(own, config.to_dict(), overwrite=overwrite)
        restored = restore_intact_backup(paths["backup"])  # before anything is rewritten
        if restored and is_chief:
            print(restored, flush=True)
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
    # Epochs that hide fewer images (hide_from_epoch, hide_until_epoch, hide_anneal):
    # the pipeline reads the share from a variable the HidingSchedule callback sets.
    # A constant share below 1 (hide_share) is a constant of the pipeline.
    hiding_share = None
    scheduled = hiding is not None and config.hiding.scheduled
    if scheduled:
        hiding_share = tf.Variable(config.hiding.hidden_share(1), trainable=False,
                                   dtype=tf.float32, name="hidden_share")
    elif hiding is not None and config.hiding.hide_share < 1.0:
        hiding_share = config.hiding.hide_share
    train_ds = data.make_train_dataset(
        source, config.data.image_size, global_batch,
        hiding=hiding, seed=config.seed, hiding_share=hiding_share,
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
    if steps is None and cardinality > 0 and not scheduled:
        # One iterator for the whole run: Keras builds a new one per epoch otherwise, and
        # the input pipeline stands idle while it fills up again. Each repetition is an
        # epoch (reshuffled, its crops, flips and masks drawn anew). Not under a hiding
        # schedule: batches prefetched across an epoch's end would carry the share of
        # the epoch before.
        steps = cardinality
    if steps is not None:
        train_ds = train_ds.repeat()
    eval_ds = val_ds = None
    if config.data.eval_split is not None:
        # Read every epoch (validation, localization passes): kept in memory after the
        # first pass when it fits `eval_cache_mb`.
        cache_bytes = data.eval_cache_bytes(source, config.data.image_size,
                                            config.data.eval_split)
        eval_ds = data.make_eval_dataset(
            source, config.data.image_size, config.data.eval_batch_size or global_batch,
            split=config.data.eval_split, preprocessing=prep,
            cache=cache_bytes is not None and cache_bytes <= config.data.eval_cache_mb * 2**20)
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
            freeze_backbone_batchnorm(model)
        optimizer = make_optimizer(config.optim, config.epochs,
                                   head_paths=head_variable_paths(model))
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if source.num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"))
        # What is fitted: the model's graph with the labels as an input, the method's
        # batch augmentation and loss. Files are written from `model` itself.
        training = methods.TrainingModel(model, method, seed=config.seed)
        training.compile(optimizer=optimizer, metrics=metrics, auto_scale_loss=False)
        training.optimizer.build(model.trainable_variables)
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            _prebuild_for_multi_worker(training, per_replica, config.data.image_size)

    # Only now, with the model and its weights built, is anything written.
    os.makedirs(paths["checkpoints"], exist_ok=True)
    atomic_write_json(paths["config"], config.to_dict())
    # Saved with the run, so export and evaluation need not reach the data again.
    from keras_has.train import run_folder

    run_folder.write_preprocessing(own, prep, mean, std, config.data.train_split,
                                   None if hiding is None else hiding["fill_value"])
    if getattr(source, "class_names", None):
        run_folder.write_class_names(own, source.class_names)

    # Order matters at the end of an epoch: the schedule and localization callbacks
    # add their logs, then checkpoints and the CSV row are written, and the backup is
    # written last, so an epoch counts as done only when everything else is on disk.
    truncate_csv_to_backup(paths["csv"], paths["backup"])
    callbacks = [EpochSchedule(config.optim, config.epochs)]
    if scheduled:
        from keras_has.train.callbacks import HidingSchedule

        callbacks.append(HidingSchedule(hiding_share, config.hiding))
    loc_cb = _localization_callback(config, eval_ds, paths["tensorboard"], prep)
    if loc_cb is not None:
        callbacks.append(loc_cb)
    if config.verbose == 2:
        from keras_has.train.callbacks import EpochLine

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
    from keras_has.train.callbacks import EpochCSVLogger, TensorBoard

    callbacks.append(EpochCSVLogger(paths["csv"], append=True))
    callbacks.append(TensorBoard(paths["tensorboard"]))
    epochs_run: list[int] = []
    epoch_seconds: list[float] = []
    epoch_start = [0.0]

    def epoch_begins(epoch, logs):
        epoch_start[0] = time.perf_counter()

    def epoch_ends(epoch, logs):
        epochs_run.append(int(epoch) + 1)
        epoch_seconds.append(time.perf_counter() - epoch_start[0])

    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=epoch_begins,
                                                    on_epoch_end=epoch_ends))
    callbacks.append(AtomicBackupAndRestore(paths["backup"], double_checkpoint=True,
                                            delete_checkpoint=False))

    try:
        with strategy.scope():
            training.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps,
                         validation_data=val_ds, callbacks=callbacks, shuffle=False,
                         verbose=1 if config.verbose == 1 else 0)
    except KeyboardInterrupt as interrupt:  # Ctrl-C: say where (finished epochs are kept)
        interrupt.epoch = len(read_csv_log(paths["csv"]).get("epoch", [])) + 1
        raise
    _save_model_atomic(training, paths["model"])  # TrainingModel.save: for inference
    atomic_write_json(paths["config"], config.to_dict())
    skipped = {split: list(ids) for split, ids in source.skipped_images().items()}
    if skipped and is_chief:
        atomic_write_json(os.path.join(own, "skipped_images.json"), skipped)

    return TrainResult(
        model=model, history=read_csv_log(paths["csv"]), epochs_run=epochs_run,
        epoch_seconds=epoch_seconds,
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


def truncate_csv_to_backup(csv_path: str, backup_dir: str) -> None:
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
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= done]  # from 1
    if len(kept) == len(rows):
        return
    tmp = csv_path + ".tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept if done else [])
    os.replace(tmp, csv_path)
