"""`keras-has train-temporal`: a temporal GAP model, optionally with Hide-and-Seek in time.

    keras-has train-temporal --flagfile=temporal_quickstart --output_dir=runs/temporal_has
    keras-has train-temporal --flagfile=thumos14_has --source=/data/thumos14_features \\
        --output_dir=runs/thumos14_has

Every flag is a field of `keras_has.config.temporal.TemporalConfig`. The flags become a
validated config before anything is written; the data source is then loaded and checked
(errors name the file and line) before training. Running the same command again resumes
an interrupted run. After training, the model is evaluated on --eval_split (detection mAP
at each tIoU and video-level classification mAP) and metrics.json is written in the run
folder.
"""
from __future__ import annotations

import os

from keras_has.cli import common, config_flags
from keras_has.config.temporal import TemporalConfig

config_flags.define_config_flags(TemporalConfig)


def _load(config):
    from keras_has.temporal.training import load_source

    return load_source(config)  # checks every file before training


def _train(command, config, source):
    from keras_has.util.files import atomic_write_json, jsonable
    from keras_has.temporal.evaluation import evaluate_temporal
    from keras_has.temporal.training import train_temporal

    result = train_temporal(config, source=source)
    print(f"{command}: epochs_run={result.epochs_run} model={result.model_path}")
    if config.eval_split:
        ev = evaluate_temporal(result.model, source.split(config.eval_split),
                               source.class_names, cam_threshold=config.cam_threshold,
                               class_threshold=config.class_threshold,
                               tiou_thresholds=config.tiou_thresholds)
        path = os.path.join(result.output_dir, "metrics.json")
        atomic_write_json(path, jsonable(ev.metrics))
        maps = " ".join(f"{t:g}:{ev.metrics['map'][t]:.2f}" for t in config.tiou_thresholds)
        print(f"{command}: mAP@tIoU {maps}; classification mAP "
              f"{ev.metrics['classification_map']:.2f}; metrics {path}")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (TemporalConfig,), _train, _load)
