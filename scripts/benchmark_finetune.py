"""Fine-tuning benchmark on real photos: GAP vs Hide-and-Seek from pretrained MobileNetV2.

Usage (from the repository root; needs the ImageNet weights in ~/.keras/models):

    python scripts/benchmark_finetune.py --flagfile=flags/finetune_mobilenetv2_has.cfg \\
        --source=../shared/data/pets3 --seeds=0,1,2 --output_dir=outputs/finetune_pets3

It takes every flag of `keras-has train` (the flagfile's hiding flags define the
Hide-and-Seek arm; the baseline is the same run without hiding) plus the fields of
`keras_has.config.BenchmarkConfig` (--seeds, --body_split, --head_split, --mask_split,
--cam_threshold, --gallery_size, --[no]linear_probe, --arms=cam,has; `gap` is still
accepted for `cam`). For each seed it fine-tunes the arms (timed; no evaluation during
training), then scores each on the body boxes, the head boxes and the masks of the test
images, and fits the linear probe once (`keras_has.experiments.finetune_benchmark`).
Prints a Markdown table and writes results.json, gallery.png and iou.png under
--output_dir. Finished runs are not retrained when the command is repeated.
"""
from __future__ import annotations

import dataclasses
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_has.cli import common, config_flags  # noqa: E402
from keras_has.cli.flagfiles import expand_flagfiles  # noqa: E402
from keras_has.config import BenchmarkConfig, TrainConfig  # noqa: E402

config_flags.define_config_flags(TrainConfig)
config_flags.define_config_flags(BenchmarkConfig)


def _benchmark(command, config, benchmark, _):
    from keras_has.experiments.finetune_benchmark import run_benchmark

    result = run_benchmark(config, output_dir=config.output_dir, verbose=config.verbose,
                           **dataclasses.asdict(benchmark))
    print()
    print(result.table)
    for arm, by_seed in result.runs.items():
        for seed, row in by_seed.items():
            print(f"{arm} seed {seed}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float)))
    print(f"\n{command}: results {result.results_path}")
    if result.gallery_path:
        print(f"{command}: gallery {result.gallery_path}")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (TrainConfig, BenchmarkConfig), _benchmark)


if __name__ == "__main__":
    app.run(main, argv=[sys.argv[0]] + expand_flagfiles(sys.argv[1:]))
