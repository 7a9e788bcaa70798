"""Train a GAP classifier (optionally with Hide-and-Seek) for weakly-supervised localization.

Usage (from the repository root; nested --flagfile paths are relative to it):

    python scripts/train.py --flagfile=flags/quickstart.cfg --output_dir=/tmp/quick
    python scripts/train.py --flagfile=flags/alexnet_has_32.cfg --source=/data/ILSVRC \\
        --output_dir=runs/alexnet_has_32

Flags given after --flagfile override it. The flags become a validated
`keras_has.config.TrainConfig` before anything is written; then `keras_has.training.train`
runs. Running the same command again resumes an interrupted run from its last
finished epoch.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import sys
import traceback

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

from keras_has import console  # noqa: E402  (imports no TensorFlow)

_DEFAULTS_OPTIM = dict(lr_values=["0.01", "0.005", "0.001", "0.0005", "0.0001"],
                       lr_boundaries=["18", "29", "43", "52"])

# -- model and data
flags.DEFINE_string("model", None, "Model name (keras_has.models.list_models()).")
flags.DEFINE_multi_string("model_arg", [], "Extra get_model option as key=value "
                          "(Python literal or plain string), e.g. weights=imagenet. Repeatable.")
flags.DEFINE_string("source", "synthetic", "Dataset: 'synthetic', a TFDS name known to "
                    "keras_has.data.list_sources(), or the path of a WSOL metadata folder.")
flags.DEFINE_string("source_config", "", "TFDS builder config of a named source (empty: default).")
flags.DEFINE_string("data_dir", "", "TFDS data directory for named sources (empty: TFDS default).")
flags.DEFINE_integer("image_size", 224, "Side of the square training/eval images.")
flags.DEFINE_bool("skip_corrupt", False, "WSOL folders: skip missing or unreadable images "
                  "(counted, logged once per split) instead of failing.")
flags.DEFINE_bool("clip_boxes", False, "WSOL folders: clip boxes more than 2 px outside "
                  "their image (a warning per line) instead of failing.")
flags.DEFINE_integer("resize_size", 0, "Side training images are resized to before the "
                     "random crop (0: the paper's round(image_size * 256 / 224)).")
flags.DEFINE_string("preprocessing", "auto", "Input preprocessing: auto (the backbone's "
                    "keras.applications preprocessing with pretrained weights, else the "
                    "dataset's mean/std), dataset, caffe, tf or torch.")
flags.DEFINE_integer("batch_size", 32, "Per-replica batch size.")
flags.DEFINE_integer("global_batch_size", 0, "Global batch (0: batch_size x replicas); "
                     "must be divisible by the number of replicas.")
flags.DEFINE_string("train_split", "train", "Training split.")
flags.DEFINE_string("eval_split", "test", "Evaluation split (empty: no evaluation).")
flags.DEFINE_integer("eval_batch_size", 0, "Evaluation batch (0: the global training batch).")
# -- Hide-and-Seek
flags.DEFINE_list("grid_sizes", [], "Hide-and-Seek patch sides in pixels, e.g. 16,32,44,56; "
                  "empty = GAP baseline.")
flags.DEFINE_float("hide_prob", 0.5, "Probability of hiding each patch (0 = baseline).")
flags.DEFINE_integer("grid_reference_size", 0, "Image side the grid sizes are written for; "
                     "they are scaled to --image_size (0: sizes are pixels of --image_size).")
# -- WSOL method (keras_has.methods) and its hyperparameters: the MethodConfig fields,
# with their defaults and help text.
def _define_method_flags():
    import dataclasses as _dc

    from keras_has.config import MethodConfig

    for field in _dc.fields(MethodConfig):
        helptext = field.metadata.get("help", field.name)
        if field.name == "adl_layers":
            flags.DEFINE_list(field.name, list(field.default), helptext)
        elif field.name == "method":
            flags.DEFINE_string(field.name, field.default, helptext)
        else:
            flags.DEFINE_float(field.name, field.default, helptext)


_define_method_flags()
# -- optimisation
flags.DEFINE_integer("epochs", 55, "Number of epochs.")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch (0: one pass over the split).")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer: momentum SGD (the "
                  "authors') or Adam (--momentum is then its beta_1).")
flags.DEFINE_enum("lr_schedule", "step", ["step", "cosine"], "Learning-rate schedule: "
                  "piecewise constant (--lr_values at --lr_boundaries) or cosine decay from "
                  "the single --lr_values entry to 0, updated every step.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (Adam's beta_1).")
flags.DEFINE_bool("nesterov", False, "Nesterov momentum.")
flags.DEFINE_list("lr_values", _DEFAULTS_OPTIM["lr_values"], "Piecewise-constant learning rates.")
flags.DEFINE_list("lr_boundaries", _DEFAULTS_OPTIM["lr_boundaries"],
                  "Completed (reference) epochs at which the rate moves to the next value.")
flags.DEFINE_integer("schedule_reference_epochs", 55, "Run length the boundaries are written "
                     "for; boundaries scale by epochs / this (0: use them as they are).")
flags.DEFINE_float("weight_decay", 5e-4, "Coupled L2 coefficient on kernels (Caffe/Torch).")
flags.DEFINE_integer("weight_decay_until_epoch", 29, "Completed (reference) epochs after which "
                     "the weight decay is 0 (-1: never switched off).")
flags.DEFINE_float("lr_classifier_ratio", 10.0, "Learning-rate multiplier (> 0) of the layers "
                   "added on top of a backbone (classifier, CAM convs); wsolevaluation's 10.")
flags.DEFINE_integer("warmup_epochs", 0, "First epochs in which only the added layers train "
                     "(the backbone's rate is 0).")
flags.DEFINE_bool("freeze_batchnorm", False, "Keep the backbone's BatchNorm layers frozen "
                  "(inference mode, not trained).")
# -- run
flags.DEFINE_string("output_dir", None, "Run folder (checkpoints, logs, final model).")
flags.DEFINE_bool("overwrite", False, "Start over in an --output_dir that holds a run with "
                  "other settings (the old folder is moved aside to <output_dir>.old-<time>); "
                  "without it such a rerun is refused, listing the differences.")
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "multi_worker", "tpu", "one_device"],
                  "tf.distribute strategy.")
flags.DEFINE_string("tpu", "", "TPU name/address for --strategy=tpu.")
flags.DEFINE_string("mixed_precision", "none",
                    "none | auto | mixed_bfloat16 (CPU/TPU) | mixed_float16 (GPU).")
flags.DEFINE_integer("seed", 0, "Seed for data order, masks and initialisation.")
flags.DEFINE_integer("eval_every", 1, "Localization evaluation every N epochs (0: never).")
flags.DEFINE_string("best_metric", "val_loss", "Log key that selects best.keras (empty: none).")
flags.DEFINE_enum("best_mode", "auto", ["auto", "min", "max"], "Direction of --best_metric.")
flags.DEFINE_integer("verbose", -1, "0 silent, 1 progress bar, 2 one line per epoch, -1 "
                     "(default): a progress bar on a terminal, else one line per epoch.")

FLAGS = flags.FLAGS


def parse_list(name: str, values, kind=int) -> tuple:
    """A comma-separated list flag as a tuple of `kind` (int or float); blanks skipped."""
    try:
        return tuple(kind(v) for v in values if str(v).strip() != "")
    except ValueError:
        expected = "integers" if kind is int else "numbers"
        raise ValueError(f"{name}: expected a comma-separated list of {expected}, "
                         f"received {','.join(values)!r}") from None


def _model_kwargs(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"model_arg: expected key=value, received {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def quiet_unless_verbosity(flag_values=FLAGS) -> None:
    """TensorFlow's start-up INFO lines and absl INFO logs off, unless --verbosity is
    given (e.g. --verbosity=0 brings back INFO, 1 debug); TFDS progress bars off unless
    progress bars were asked for (a terminal, or --verbose=1)."""
    if not flag_values["verbosity"].present:
        console.quiet_tensorflow()
    if console.fit_verbosity(flag_values.verbose) != 1:
        console.disable_dataset_progress_bars()


def run_reporting_errors(script: str, fn, *args, flag_values=FLAGS, **kwargs):
    """`fn(*args, **kwargs)`, or None after one line on stderr for an expected error (bad
    data or settings found while running, a run folder in use); the traceback too under
    --verbosity=1 or more."""
    from keras_has.run_folder import RunFolderBusy

    try:
        return fn(*args, **kwargs)
    except (ValueError, RunFolderBusy) as e:
        if flag_values["verbosity"].present and flag_values.verbosity >= 1:
            traceback.print_exc()
        print(f"{script}: {e}", file=sys.stderr)
        return None


def config_from_flags(flag_values=FLAGS):
    """Builds the validated TrainConfig from parsed flags (raises ValueError)."""
    from keras_has import config as cfg

    f = flag_values
    if not f.model:
        raise ValueError("model: expected a model name (--model), received nothing")
    if not f.output_dir:
        raise ValueError("output_dir: expected a run folder (--output_dir), received nothing")
    data = cfg.DataConfig(
        source=f.source, source_config=f.source_config or None, data_dir=f.data_dir or None,
        image_size=f.image_size, resize_size=f.resize_size or None, batch_size=f.batch_size,
        global_batch_size=f.global_batch_size or None, train_split=f.train_split,
        eval_split=f.eval_split or None, eval_batch_size=f.eval_batch_size or None,
        skip_corrupt=f.skip_corrupt, clip_boxes=f.clip_boxes)
    hiding = cfg.HidingConfig(grid_sizes=parse_list("grid_sizes", f.grid_sizes),
                              hide_prob=f.hide_prob,
                              reference_size=f.grid_reference_size or None)
    optim = cfg.OptimConfig(
        optimizer=f.optimizer, lr_schedule=f.lr_schedule,
        momentum=f.momentum, nesterov=f.nesterov,
        lr_values=parse_list("lr_values", f.lr_values, float),
        lr_boundaries=parse_list("lr_boundaries", f.lr_boundaries),
        schedule_reference_epochs=f.schedule_reference_epochs or None,
        weight_decay=f.weight_decay,
        weight_decay_until_epoch=(None if f.weight_decay_until_epoch == -1
                                  else f.weight_decay_until_epoch),
        lr_classifier_ratio=f.lr_classifier_ratio, warmup_epochs=f.warmup_epochs)
    wsol = cfg.MethodConfig(**{field.name: (tuple(getattr(f, field.name))
                                            if field.name == "adl_layers"
                                            else getattr(f, field.name))
                               for field in dataclasses.fields(cfg.MethodConfig)})
    return cfg.TrainConfig(
        model=f.model, output_dir=f.output_dir, data=data, hiding=hiding, optim=optim,
        wsol=wsol,
        epochs=f.epochs, steps_per_epoch=f.steps_per_epoch or None, strategy=f.strategy,
        tpu=f.tpu, mixed_precision=f.mixed_precision, seed=f.seed, eval_every=f.eval_every,
        best_metric=f.best_metric, best_mode=f.best_mode,
        model_kwargs=_model_kwargs(f.model_arg), verbose=console.fit_verbosity(f.verbose),
        preprocessing=f.preprocessing, freeze_batchnorm=f.freeze_batchnorm)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    quiet_unless_verbosity()
    try:
        config = config_from_flags()
    except ValueError as e:
        print(f"train.py: invalid configuration: {e}", file=sys.stderr)
        return 2
    from keras_has.training import train

    result = run_reporting_errors("train.py", train, config, overwrite=FLAGS.overwrite)
    if result is None:
        return 2
    print(f"train.py: done; replicas={result.num_replicas} "
          f"global_batch={result.global_batch_size} epochs_run={result.epochs_run} "
          f"epochs_logged={len(result.history.get('epoch', []))} model={result.model_path}",
          flush=True)
    return 0


if __name__ == "__main__":
    app.run(main)
