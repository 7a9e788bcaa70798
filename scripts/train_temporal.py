"""Train (and evaluate) a temporal GAP model, optionally with Hide-and-Seek in time.

Usage (from the repository root):

    python scripts/train_temporal.py --flagfile=flags/temporal_quickstart.cfg \\
        --output_dir=runs/temporal_has
    python scripts/train_temporal.py --flagfile=flags/thumos14_has.cfg \\
        --source=/data/thumos14_features --output_dir=runs/thumos14_has

The flags become a validated `keras_has.temporal.config.TemporalConfig` before anything
is written; the data source is then loaded and checked (errors name the file and line)
before training. Running the same command again resumes an interrupted run. After
training, the model is evaluated on --eval_split (detection mAP at each tIoU and
video-level classification mAP) and metrics.json is written in the run folder.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("source", "synthetic", "'synthetic' (built in) or a feature folder "
                    "(features/<video_id>.npy, videos.txt, annotations.txt, class_names.txt).")
flags.DEFINE_string("source_config", "default", "Synthetic config: default | tiny.")
flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data (0: reference data).")
flags.DEFINE_string("train_split", "train", "Training split (THUMOS14: validation).")
flags.DEFINE_string("eval_split", "test", "Evaluation split (empty: none).")
flags.DEFINE_integer("batch_size", 32, "Global batch size (videos).")
flags.DEFINE_integer("epochs", 50, "Epochs.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
flags.DEFINE_float("weight_decay", 0.0, "Adam's decoupled weight decay (0: none).")
flags.DEFINE_integer("hidden", 64, "Channels of each temporal conv layer.")
flags.DEFINE_integer("num_layers", 2, "Temporal conv layers before the CAM layer.")
flags.DEFINE_integer("kernel_size", 3, "Temporal kernel size (odd).")
flags.DEFINE_float("dropout", 0.0, "Dropout after each conv layer.")
flags.DEFINE_list("segment_lengths", [], "Hiding segment lengths in frames, e.g. 0,4,8,16 "
                  "(empty: the baseline).")
flags.DEFINE_float("hide_prob", 0.5, "Probability of hiding each segment.")
flags.DEFINE_enum("hide_in", "data", ["data", "model"], "Hide in the input pipeline (data) or "
                  "with a TemporalHideAndSeek first layer of the model (model).")
flags.DEFINE_float("cam_threshold", 0.2, "Foreground threshold, fraction of the normalised CAM.")
flags.DEFINE_float("class_threshold", 0.1, "Probability for a class to be predicted present.")
flags.DEFINE_list("tiou_thresholds", ["0.1", "0.2", "0.3", "0.4", "0.5"],
                  "tIoU thresholds of the detection mAP, each in (0, 1].")
flags.DEFINE_string("output_dir", None, "Run folder.")
flags.DEFINE_enum("strategy", "one_device", ["mirrored", "multi_worker", "tpu", "one_device"],
                  "tf.distribute strategy.")
flags.DEFINE_string("mixed_precision", "none",
                    "none | auto | mixed_bfloat16 (CPU/TPU) | mixed_float16 (GPU).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, data order and hiding.")
flags.DEFINE_integer("verbose", 0, "Keras fit verbosity: 0, 1 or 2.")

FLAGS = flags.FLAGS


def _parse_list(name, values, kind):
    try:
        return tuple(kind(v) for v in values if str(v).strip() != "")
    except ValueError:
        raise ValueError(f"{name}: expected a comma-separated list of "
                         f"{'integers' if kind is int else 'numbers'}, received "
                         f"{','.join(values)!r}") from None


def config_from_flags(f=FLAGS):
    """The validated TemporalConfig of the parsed flags (raises ValueError)."""
    from keras_has.temporal.config import TemporalConfig

    if not f.output_dir:
        raise ValueError("output_dir: expected a run folder (--output_dir), received nothing")
    return TemporalConfig(
        output_dir=f.output_dir, source=f.source, source_config=f.source_config,
        data_seed=f.data_seed, train_split=f.train_split, eval_split=f.eval_split or None,
        batch_size=f.batch_size, epochs=f.epochs, learning_rate=f.learning_rate,
        weight_decay=f.weight_decay, hidden=f.hidden, num_layers=f.num_layers,
        kernel_size=f.kernel_size, dropout=f.dropout,
        segment_lengths=_parse_list("segment_lengths", f.segment_lengths, int),
        hide_prob=f.hide_prob, hide_in=f.hide_in, cam_threshold=f.cam_threshold,
        class_threshold=f.class_threshold,
        tiou_thresholds=_parse_list("tiou_thresholds", f.tiou_thresholds, float),
        strategy=f.strategy, mixed_precision=f.mixed_precision, seed=f.seed, verbose=f.verbose)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
        from keras_has.temporal.training import load_source

        source = load_source(config)  # checks every file before training
    except ValueError as e:
        print(f"train_temporal.py: invalid input: {e}", file=sys.stderr)
        return 2
    from keras_has.io_utils import atomic_write_json
    from keras_has.temporal.comparison import _jsonable
    from keras_has.temporal.evaluation import evaluate_temporal
    from keras_has.temporal.training import train_temporal

    result = train_temporal(config, source=source)
    print(f"train_temporal.py: epochs_run={result.epochs_run} model={result.model_path}")
    if config.eval_split:
        ev = evaluate_temporal(result.model, source.split(config.eval_split),
                               source.class_names, cam_threshold=config.cam_threshold,
                               class_threshold=config.class_threshold,
                               tiou_thresholds=config.tiou_thresholds)
        path = os.path.join(result.output_dir, "metrics.json")
        atomic_write_json(path, _jsonable(ev.metrics))
        maps = " ".join(f"{t:g}:{ev.metrics['map'][t]:.2f}" for t in config.tiou_thresholds)
        print(f"train_temporal.py: mAP@tIoU {maps}; classification mAP "
              f"{ev.metrics['classification_map']:.2f}; metrics {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
