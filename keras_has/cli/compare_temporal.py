"""`keras-has compare-temporal`: temporal baseline vs Hide-and-Seek in time, side by side.

    keras-has compare-temporal --flagfile=temporal_quickstart --seeds=0,1,2 \\
        --output_dir=outputs/temporal

It takes every flag of `keras-has train-temporal` (the flagfile's --segment_lengths and
--hide_prob define the Hide-and-Seek arm; the baseline is the same run without hiding)
plus the fields of `keras_has.config.temporal.TemporalComparisonConfig`, and prints the
detection mAP table; results.json and timeline.png go under --output_dir.
"""
from __future__ import annotations

from keras_has.cli import common, config_flags
from keras_has.config.temporal import TemporalComparisonConfig, TemporalConfig

config_flags.define_config_flags(TemporalConfig)
config_flags.define_config_flags(TemporalComparisonConfig)


def _load(config, comparison):
    if not config.hiding_enabled:
        raise ValueError("segment_lengths/hide_prob: the Hide-and-Seek arm must hide "
                         f"something, received segment_lengths={list(config.segment_lengths)} "
                         f"hide_prob={config.hide_prob}")
    from keras_has.temporal.training import load_source

    return load_source(config)  # checks every file before training


def _compare(command, config, comparison, source):
    from keras_has.temporal.comparison import run_temporal_comparison

    result = run_temporal_comparison(config, config.output_dir, seeds=comparison.seeds,
                                     figure_videos=comparison.figure_videos, source=source)
    print()
    print(result.table)
    print(f"\n{command}: {result.wall_seconds:.1f} s; results {result.results_path}")
    if result.timeline_path:
        print(f"{command}: timeline {result.timeline_path}")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (TemporalConfig, TemporalComparisonConfig), _compare,
                              _load)
