"""Search one WSOL method's hyperparameters (and learning rate) on boxes kept apart from test.

Usage (from the repository root):

    python scripts/tune.py --flagfile=flags/quickstart.cfg --tune_method=acol \\
        --tune_trials=4 --output_dir=outputs/tune_acol
    python scripts/compare.py --flagfile=flags/quickstart.cfg \\
        --flagfile=outputs/tune_acol/best.cfg --methods=acol --output_dir=...

It takes every flag of scripts/train.py plus the flags below. Each trial trains the
method with one point of the search space and is scored by MaxBoxAccV2 on
--tune_split (default: the built-in dataset's `validation` split, a WSOL folder's
`val` split; never the test split). Writes trials.csv (every finished trial),
best.cfg (a flagfile of the chosen values) and plan.json under --output_dir. Running
the same command again skips finished trials and resumes the interrupted one.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

import train as train_flags  # noqa: E402  (scripts/train.py: shared training flags)

flags.DEFINE_string("tune_method", "acol", "Method whose hyperparameters are searched "
                    "(keras_has.methods.list_methods()).")
flags.DEFINE_multi_string("tune_space", [], "Candidate values of one hyperparameter as "
                          "name=v1,v2,... (a MethodConfig field, hide_prob); repeatable. "
                          "None given: the method's default space (keras_has.tuning).")
flags.DEFINE_list("tune_lrs", [], "Candidate first learning rates (the schedule is scaled); "
                  "empty: the flagfile's schedule only.")
flags.DEFINE_integer("tune_trials", 0, "Grid points to train, drawn with --tune_seed "
                     "(0: the whole grid).")
flags.DEFINE_integer("tune_seed", 0, "Seed of the trial draw.")
flags.DEFINE_string("tune_split", "", "Split the trials are scored on (empty: validation / "
                    "val, whichever the source has).")
flags.DEFINE_float("cam_threshold", 0.2, "CAM threshold of GT-known / Top-1 Loc in trials.csv.")

FLAGS = flags.FLAGS


def _space(items) -> dict | None:
    if not items:
        return None
    space = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"tune_space: expected name=v1,v2,..., received {item!r}")
        space[key] = train_flags.parse_list(f"tune_space {key}", values.split(","), float)
    return space


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_flags.quiet_unless_verbosity(FLAGS)
    try:
        config = train_flags.config_from_flags(FLAGS)
        space = _space(FLAGS.tune_space)
        lrs = train_flags.parse_list("tune_lrs", FLAGS.tune_lrs, float)
        from keras_has import methods

        methods.get_method(FLAGS.tune_method)
    except ValueError as e:
        print(f"tune.py: invalid configuration: {e}", file=sys.stderr)
        return 2
    from keras_has.tuning import run_tuning

    result = train_flags.run_reporting_errors(
        "tune.py", run_tuning, config, output_dir=FLAGS.output_dir, method=FLAGS.tune_method,
        space=space, lrs=lrs, trials=FLAGS.tune_trials or None, seed=FLAGS.tune_seed,
        split=FLAGS.tune_split or None, cam_threshold=FLAGS.cam_threshold,
        verbose=config.verbose)
    if result is None:
        return 2
    print(f"tune.py: best trial {result.best['trial']} {result.best['params']} "
          f"MaxBoxAccV2 {float(result.best['max_box_acc_v2']):.2f}")
    print(f"tune.py: trials {result.csv_path}")
    print(f"tune.py: flagfile {result.flagfile_path}")
    return 0


if __name__ == "__main__":
    app.run(main)
