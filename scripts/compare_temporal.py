"""Temporal GAP baseline vs temporal Hide-and-Seek, trained and evaluated side by side.

Usage (from the repository root):

    python scripts/compare_temporal.py --flagfile=flags/temporal_quickstart.cfg \\
        --seeds=0,1,2 --output_dir=outputs/temporal

It takes every flag of scripts/train_temporal.py (the flagfile's --segment_lengths and
--hide_prob define the Hide-and-Seek arm; the baseline is the same run without hiding)
plus --seeds and --figure_videos, prints mAP at tIoU 0.1-0.5 for both arms in the form
of the paper's Table 5 and writes results.json and timeline.png under --output_dir.
Running the same command again resumes interrupted runs and re-evaluates.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

import train_temporal as train_flags  # noqa: E402  (shared flags)

flags.DEFINE_list("seeds", ["0"], "Seeds: one baseline + Hide-and-Seek pair per seed.")
flags.DEFINE_integer("figure_videos", 4, "Evaluation videos drawn in timeline.png (0: none).")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = train_flags.config_from_flags(FLAGS)
        seeds = train_flags._parse_list("seeds", FLAGS.seeds, int)
        if not config.hiding_enabled:
            raise ValueError("segment_lengths/hide_prob: the Hide-and-Seek arm must hide "
                             f"something, received segment_lengths={FLAGS.segment_lengths} "
                             f"hide_prob={FLAGS.hide_prob}")
        if not seeds:
            raise ValueError("seeds: expected at least one seed, received none")
        from keras_has.temporal.training import load_source

        source = load_source(config)
    except ValueError as e:
        print(f"compare_temporal.py: invalid input: {e}", file=sys.stderr)
        return 2
    from keras_has.temporal.comparison import run_temporal_comparison

    result = run_temporal_comparison(config, FLAGS.output_dir, seeds=seeds,
                                     figure_videos=FLAGS.figure_videos, source=source)
    print()
    print(result.table)
    print(f"\ncompare_temporal.py: {result.wall_seconds:.1f} s; results {result.results_path}")
    if result.timeline_path:
        print(f"compare_temporal.py: timeline {result.timeline_path}")
    return 0


if __name__ == "__main__":
    app.run(main)
