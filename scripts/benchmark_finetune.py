"""Fine-tuning benchmark on real photos: GAP vs Hide-and-Seek from pretrained MobileNetV2.

Usage (from the repository root; needs the ImageNet weights in ~/.keras/models):

    python scripts/benchmark_finetune.py --flagfile=flags/finetune_mobilenetv2_has.cfg \\
        --source=../shared/data/pets3 --seeds=0,1,2 --output_dir=outputs/finetune_pets3

It takes every flag of `keras-has train` (the flagfile's hiding flags define the
Hide-and-Seek arm; the baseline is the same run without hiding) plus the flags below.
For each seed it fine-tunes both arms (timed; no evaluation during training), then
scores each on the body boxes (--body_split), the head boxes (--head_split) and the
masks (--mask_split) of the test images, and fits the linear probe once. Prints a
Markdown table and writes results.json and gallery.png under --output_dir. Finished
runs are not retrained when the command is repeated.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_has.cli import config_flags  # noqa: E402
from keras_has.cli.flagfiles import expand_flagfiles  # noqa: E402
from keras_has.config import TrainConfig  # noqa: E402

config_flags.define_config_flags(TrainConfig)

flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: one GAP + Hide-and-Seek pair per seed.")
flags.DEFINE_string("body_split", "test", "Split with the whole-object boxes.")
flags.DEFINE_string("head_split", "test_head", "Split with the part (head) boxes ('' none).")
flags.DEFINE_string("mask_split", "test_mask", "Split with the masks, for PxAP ('' none).")
flags.DEFINE_float("cam_threshold", 0.2, "CAM threshold (fraction of max) of GT-known Loc.")
flags.DEFINE_integer("gallery_size", 8, "Test images in gallery.png (0: none).")
flags.DEFINE_bool("linear_probe", True, "Fit the linear probe on the frozen features.")
flags.DEFINE_list("arms", ["gap", "has"], "Arms to run: gap, has (e.g. only has, to try "
                  "hiding settings against an earlier baseline).")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = config_flags.config_from_flags(TrainConfig, FLAGS)
        try:
            seeds = tuple(int(s) for s in FLAGS.seeds)
        except ValueError:
            raise ValueError(f"seeds: expected integers, received {FLAGS.seeds}") from None
    except ValueError as e:
        print(f"benchmark_finetune.py: invalid configuration: {e}", file=sys.stderr)
        return 2
    from keras_has.experiments.finetune_benchmark import run_benchmark

    try:
        result = run_benchmark(config, output_dir=FLAGS.output_dir, seeds=seeds,
                               body_split=FLAGS.body_split, head_split=FLAGS.head_split,
                               mask_split=FLAGS.mask_split, cam_threshold=FLAGS.cam_threshold,
                               gallery_size=FLAGS.gallery_size,
                               linear_probe=FLAGS.linear_probe, arms=FLAGS.arms,
                               verbose=min(FLAGS.verbose, 1))
    except (ValueError, FileNotFoundError) as e:
        print(f"benchmark_finetune.py: {e}", file=sys.stderr)
        return 2
    print()
    print(result.table)
    for arm, by_seed in result.runs.items():
        for seed, row in by_seed.items():
            print(f"{arm} seed {seed}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float)))
    print(f"\nbenchmark_finetune.py: results {result.results_path}")
    if result.gallery_path:
        print(f"benchmark_finetune.py: gallery {result.gallery_path}")
    return 0


if __name__ == "__main__":
    app.run(main, argv=[sys.argv[0]] + expand_flagfiles(sys.argv[1:]))
