"""The main job: WSOL methods (default: GAP baseline vs Hide-and-Seek), trained and
evaluated side by side.

Usage (from the repository root; nested --flagfile paths are relative to it):

    python scripts/compare.py --flagfile=flags/quickstart.cfg --output_dir=outputs/quickstart
    python scripts/compare.py --flagfile=flags/quickstart.cfg --seeds=0,1,2 \\
        --output_dir=outputs/quickstart_3seeds
    python scripts/compare.py --flagfile=flags/quickstart.cfg \\
        --methods=cam,has,acol,spg,adl,cutmix --output_dir=outputs/methods

It takes every flag of scripts/train.py (the flagfile's hiding flags define the
Hide-and-Seek arm; every other method is the same run without hiding, with its own
hyperparameter flags) plus the flags below, trains every method for each seed,
evaluates them on --eval_split, prints a table in the form of the paper's Table 1 and
writes results.json, gallery.png (methods left to right) and the exported
Hide-and-Seek (else last method's) SavedModel under --output_dir.
Running the same command again resumes interrupted runs and re-evaluates.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

import train as train_flags  # noqa: E402  (scripts/train.py: shared training flags)

flags.DEFINE_list("seeds", ["0"], "Seeds: one run of every method per seed.")
flags.DEFINE_list("methods", ["cam", "has"], "WSOL methods to compare, in table order "
                  "(keras_has.methods.list_methods(): cam, has, acol, spg, adl, cutmix); the "
                  "first is the reference of the relative training time. Hiding flags apply "
                  "to has only; each method's own flags (e.g. --acol_threshold) to it.")
flags.DEFINE_float("cam_threshold", 0.2, "CAM threshold (fraction of max) for GT-known / "
                   "Top-1 Loc (the paper: 0.2 for AlexNet-GAP, 0.3 for GoogLeNet-GAP).")
flags.DEFINE_string("part_split", "auto", "Where boxes of the most discriminative part come "
                    "from: 'auto' (the synthetic data's part boxes, or the WSOL split "
                    "<eval_split>_head when present), '' for none, or a split name.")
flags.DEFINE_integer("gallery_size", 8, "Test images in gallery.png, the first ones of "
                     "--eval_split (0: neither gallery.png nor iou.png).")
flags.DEFINE_bool("export", True, "Export the first seed's Hide-and-Seek model.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_flags.quiet_unless_verbosity(FLAGS)
    try:
        config = train_flags.config_from_flags(FLAGS)
        seeds = train_flags.parse_list("seeds", FLAGS.seeds)
        if not 0.0 <= FLAGS.cam_threshold <= 1.0:
            raise ValueError(f"cam_threshold: expected a value in [0, 1], received "
                             f"{FLAGS.cam_threshold}")
        if not seeds:
            raise ValueError("seeds: expected at least one seed, received none")
        from keras_has.comparison import check_methods

        methods = check_methods(FLAGS.methods)
        if "has" in methods and not config.hiding.enabled:
            raise ValueError("grid_sizes/hide_prob: the Hide-and-Seek arm must hide "
                             f"something, received grid_sizes={FLAGS.grid_sizes} "
                             f"hide_prob={FLAGS.hide_prob}")
    except ValueError as e:
        print(f"compare.py: invalid configuration: {e}", file=sys.stderr)
        return 2
    from keras_has.comparison import run_comparison

    result = train_flags.run_reporting_errors(
        "compare.py", run_comparison, config, output_dir=FLAGS.output_dir, seeds=seeds,
        cam_threshold=FLAGS.cam_threshold, part_split=FLAGS.part_split,
        gallery_size=FLAGS.gallery_size, export=FLAGS.export, verbose=config.verbose,
        methods=methods)
    if result is None:
        return 2
    print()
    print(result.table)
    print(f"\ncompare.py: results {result.results_path}")
    if result.gallery_path:
        print(f"compare.py: gallery {result.gallery_path}")
        print(f"compare.py: per-image IoU {result.iou_path}")
    if result.export_dir:
        print(f"compare.py: SavedModel {result.export_dir}")
    return 0


if __name__ == "__main__":
    app.run(main)
