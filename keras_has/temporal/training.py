"""Training the temporal GAP model (baseline or Hide-and-Seek in time), with resume.

`train_temporal(config, source=None)` reuses the image trainer's conventions and
pieces (`keras_has.train.trainer`): the strategy (`make_strategy`), the mixed-precision
policy (`resolve_mixed_precision`, passed to the model builder, never set globally),
resume after a kill (`AtomicBackupAndRestore`), atomic writes, and this run folder:

```
config.json          the TemporalConfig (written first)
fill.json            the hiding fill (mean training feature) and the data summary
backup/              BackupAndRestore state: a rerun resumes after the last finished epoch
training_log.csv     one row per epoch, appended across restarts
model.keras          final model (atomic write)
```

The optimiser is Adam (the common choice for models over pre-extracted features;
the image side's SGD schedule is for CNNs trained on pixels); the loss is softmax
cross-entropy against the video's multi-hot labels normalised to sum 1 (one class per
video gives the usual cross-entropy; THUMOS14 videos with two classes split the
target).
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from keras_has.util.files import atomic_path, atomic_write_json
from keras_has.config.temporal import TemporalConfig
from keras_has.temporal.data import make_dataset, mean_feature
from keras_has.temporal.model import build_temporal_gap, normalized_target_loss

__all__ = ["train_temporal", "TemporalTrainResult", "load_source", "normalized_target_loss"]


def check_temporal_config(config: TemporalConfig) -> TemporalConfig:
    """Returns `config` after the checks that need the synthetic data's registry
    (`keras_has.config.temporal` checks the rest); ValueError naming the flag."""
    from keras_has.temporal.synthetic import CONFIGS

    if config.source == "synthetic" and config.source_config not in CONFIGS:
        raise ValueError(f"source_config: expected one of {sorted(CONFIGS)}, received "
                         f"{config.source_config!r}")
    return config


def load_source(config: TemporalConfig):
    """The `TemporalSource` that `config.source` names (checked; errors name file/line)."""
    if config.source == "synthetic":
        from keras_has.temporal.synthetic import make_synthetic_source

        return make_synthetic_source(config.source_config, seed=config.data_seed)
    from keras_has.temporal.features import load_feature_folder

    return load_feature_folder(config.source)


@dataclasses.dataclass
class TemporalTrainResult:
    """What `train_temporal` returns.

    Attributes:
      model: the trained model (inputs `features` [B, T, D], `mask` [B, T]; logits [B, K]).
      source: the `TemporalSource` trained on.
      fill_value: `[D]` hiding fill (the mean training feature).
      history: every epoch's logs (read back from the CSV, so resumed epochs count).
      epochs_run: the epochs (counted from 1) run by this call.
      output_dir, model_path: where things were written.
    """

    model: keras.Model
    source: object
    fill_value: np.ndarray
    history: dict
    epochs_run: list
    output_dir: str
    model_path: str


def _check_splits(config, source):
    for flag, split in (("train_split", config.train_split), ("eval_split", config.eval_split)):
        if split is not None and split not in source.splits:
            raise ValueError(f"{flag}: expected one of the splits {sorted(source.splits)} of "
                             f"{source.name!r}, received {split!r}")
    videos = source.splits[config.train_split]
    if len(videos) < config.batch_size:
        raise ValueError(f"batch_size: expected at most the {len(videos)} training videos "
                         f"of split {config.train_split!r}, received {config.batch_size}")
    unlabeled = [v.video_id for v in videos if not v.labels]
    if unlabeled:
        raise ValueError(f"train_split: every training video needs a video-level label; "
                         f"{len(unlabeled)} have none (first: {unlabeled[0]!r})")


def train_temporal(config: TemporalConfig, source=None) -> TemporalTrainResult:
    """Trains the temporal GAP model as `config` says; resumes when a backup exists.

    Args:
      config: a validated `TemporalConfig`.
      source: optional `TemporalSource` already loaded (else `load_source(config)`).
    """
    if not isinstance(config, TemporalConfig):
        raise TypeError(f"config: expected a TemporalConfig, received {type(config).__name__}")
    check_temporal_config(config)
    from keras_has.train.strategy import make_strategy, resolve_mixed_precision
    from keras_has.train.callbacks import EpochCSVLogger
    from keras_has.train.trainer import AtomicBackupAndRestore, read_csv_log

    strategy = make_strategy(config.strategy)
    policy = resolve_mixed_precision(config.mixed_precision, config.strategy)
    source = source if source is not None else load_source(config)
    _check_splits(config, source)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(f"batch_size: expected a multiple of the {replicas} replicas, "
                         f"received {config.batch_size}")

    out = os.path.abspath(os.path.expanduser(config.output_dir))
    paths = {name: os.path.join(out, name) for name in
             ("config.json", "fill.json", "backup", "training_log.csv", "model.keras")}
    os.makedirs(out, exist_ok=True)
    atomic_write_json(paths["config.json"], config.to_dict())

    train_videos = source.splits[config.train_split]
    fill = mean_feature(train_videos)
    atomic_write_json(paths["fill.json"], {
        "fill_value": fill.tolist(), "split": config.train_split, "source": source.name,
        "num_train_videos": len(train_videos), "feature_dim": source.feature_dim,
        "class_names": list(source.class_names)})
    hiding = None
    if config.hiding_enabled:
        hiding = {"segment_lengths": config.segment_lengths, "hide_prob": config.hide_prob,
                  "fill_value": fill.tolist()}
    in_data = config.hide_in == "data"
    dataset = make_dataset(train_videos, source.num_classes, config.batch_size, shuffle=True,
                           seed=config.seed, drop_remainder=True,
                           hiding=hiding if in_data else None)
    with strategy.scope():
        model = build_temporal_gap(
            source.num_classes, source.feature_dim, hidden=config.hidden,
            num_layers=config.num_layers, kernel_size=config.kernel_size,
            dropout=config.dropout, hiding=None if in_data else hiding, seed=config.seed,
            dtype_policy=policy)
        optimizer = keras.optimizers.Adam(
            config.learning_rate, weight_decay=config.weight_decay or None)
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, loss=normalized_target_loss,
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])

    epochs_run: list[int] = []
    callbacks = [
        EpochCSVLogger(paths["training_log.csv"], append=True),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: epochs_run.append(int(epoch) + 1)),
        AtomicBackupAndRestore(paths["backup"], double_checkpoint=True,
                               delete_checkpoint=False),
    ]
    with strategy.scope():
        model.fit(dataset, epochs=config.epochs, callbacks=callbacks, shuffle=False,
                  verbose=config.verbose)
    with atomic_path(paths["model.keras"]) as tmp:
        model.save(tmp)
    return TemporalTrainResult(model=model, source=source, fill_value=fill,
                               history=read_csv_log(paths["training_log.csv"]),
                               epochs_run=epochs_run, output_dir=out,
                               model_path=paths["model.keras"])
