"""`keras-has tune`: search one WSOL method's hyperparameters (and learning rate) on
boxes kept apart from the test split.

    keras-has tune --flagfile=quickstart --tune_method=acol --tune_trials=4 \\
        --output_dir=outputs/tune_acol
    keras-has compare --flagfile=quickstart --flagfile=outputs/tune_acol/best.cfg \\
        --methods=acol --output_dir=outputs/acol_tuned

It takes every flag of `keras-has train` plus the fields of
`keras_has.config.TuneConfig`. Each trial trains the method with one point of the
search space and is scored by MaxBoxAccV2 on --tune_split (the built-in dataset's
`validation` split, a WSOL folder's `val` split; never the test split). Prints a table of
the trials and writes trials.csv, best.cfg (a flagfile of the chosen values), plan.json
and results.json under --output_dir; the same command again skips finished trials and
resumes the interrupted one.
"""
from __future__ import annotations

from keras_has.cli import common, config_flags
from keras_has.config import TrainConfig, TuneConfig

config_flags.define_config_flags(TrainConfig)
config_flags.define_config_flags(TuneConfig)


def _tune(command, config, tune, _):
    from keras_has.util.console import fit_verbosity
    from keras_has.experiments.tuning import run_tuning

    result = run_tuning(
        config, output_dir=config.output_dir, method=tune.tune_method, space=tune.space(),
        lrs=tune.tune_lrs, trials=tune.tune_trials or None, seed=tune.tune_seed,
        split=tune.tune_split, cam_threshold=tune.cam_threshold,
        verbose=fit_verbosity(config.verbose))
    print()
    print(result.table)
    print(f"\n{command}: best trial {result.best['trial']} {result.best['params']} "
          f"MaxBoxAccV2 {float(result.best['max_box_acc_v2']):.2f}")
    print(f"{command}: trials {result.csv_path}")
    print(f"{command}: flagfile {result.flagfile_path}")
    print(f"{command}: results {result.results_path}")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (TrainConfig, TuneConfig), _tune)
