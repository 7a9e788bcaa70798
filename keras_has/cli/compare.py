"""`keras-has compare`: the main job, WSOL methods side by side (default: the GAP
baseline, method cam, vs Hide-and-Seek, method has).

    keras-has compare --flagfile=quickstart --output_dir=outputs/quickstart
    keras-has compare --flagfile=quickstart --seeds=0,1,2 --output_dir=outputs/q3
    keras-has compare --flagfile=quickstart --methods=cam,has,acol,spg,adl,cutmix \\
        --output_dir=outputs/methods

It takes every flag of `keras-has train` (the flagfile's hiding flags define the
Hide-and-Seek arm; the baseline is the same run without hiding) plus the fields of
`keras_has.config.ComparisonConfig`, trains both arms for each seed, evaluates them on
--eval_split, prints a table in the form of the paper's Table 1 and writes results.json,
gallery.png, iou.png and the exported Hide-and-Seek SavedModel under --output_dir.
Running the same command again resumes interrupted runs and re-evaluates.
"""
from __future__ import annotations

import dataclasses

from keras_has.cli import common, config_flags
from keras_has.config import ComparisonConfig, TrainConfig

config_flags.define_config_flags(TrainConfig)
config_flags.define_config_flags(ComparisonConfig)


def _check(config, comparison):
    if "has" in comparison.methods and not config.hiding.enabled:
        raise ValueError("grid_sizes/hide_prob: the Hide-and-Seek arm must hide something, "
                         f"received grid_sizes={list(config.hiding.grid_sizes)} "
                         f"hide_prob={config.hiding.hide_prob}")


def _compare(command, config, comparison, _):
    from keras_has.experiments.comparison import run_comparison

    result = run_comparison(config, output_dir=config.output_dir, verbose=config.verbose,
                            **dataclasses.asdict(comparison))
    print()
    print(result.table)
    print(f"\n{command}: results {result.results_path}")
    if result.gallery_path:
        print(f"{command}: gallery {result.gallery_path}")
        if result.iou_path:
            print(f"{command}: per-image IoU {result.iou_path}")
    if result.export_dir:
        print(f"{command}: SavedModel {result.export_dir}")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (TrainConfig, ComparisonConfig), _compare, _check)
