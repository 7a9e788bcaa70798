"""`keras-has compare-temporal`: temporal baseline vs Hide-and-Seek in time, side by side.

    keras-has compare-temporal --flagfile=temporal_quickstart --seeds=0,1,2 \\
        --output_dir=outputs/temporal

It takes every flag of `keras-has train-temporal` (the flagfile's --segment_lengths and
--hide_prob define the Hide-and-Seek arm; the baseline is the same run without hiding)
plus the fields of `keras_has.temporal.config.TemporalComparisonConfig`, and prints the
detection mAP table; results.json and timeline.png go under --output_dir.
"""
from __future__ import annotations

import sys

from absl import app, flags

from keras_has.cli import common, config_flags
from keras_has.temporal.config import TemporalComparisonConfig, TemporalConfig

config_flags.define_config_flags(TemporalConfig)
config_flags.define_config_flags(TemporalComparisonConfig)

FLAGS = flags.FLAGS


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    command = common.command_name(argv)
    common.quiet_unless_verbosity(FLAGS, FLAGS.verbose)
    try:
        config = config_flags.config_from_flags(TemporalConfig, FLAGS)
        comparison = config_flags.config_from_flags(TemporalComparisonConfig, FLAGS)
        if not config.hiding_enabled:
            raise ValueError("segment_lengths/hide_prob: the Hide-and-Seek arm must hide "
                             f"something, received segment_lengths="
                             f"{list(config.segment_lengths)} hide_prob={config.hide_prob}")
        from keras_has.temporal.training import load_source

        source = load_source(config)
    except ValueError as e:
        print(f"{command}: invalid input: {e}", file=sys.stderr)
        return 2
    from keras_has.temporal.comparison import run_temporal_comparison

    result = common.run_reporting_errors(
        command, run_temporal_comparison, config, config.output_dir, seeds=comparison.seeds,
        figure_videos=comparison.figure_videos, source=source)
    if result is None:
        return 2
    print()
    print(result.table)
    print(f"\n{command}: {result.wall_seconds:.1f} s; results {result.results_path}")
    if result.timeline_path:
        print(f"{command}: timeline {result.timeline_path}")
    return 0
