"""`keras-has train`: train a GAP classifier (optionally with Hide-and-Seek).

    keras-has train --flagfile=quickstart --output_dir=/tmp/quick
    keras-has train --flagfile=alexnet_has_32 --source=/data/ILSVRC --output_dir=runs/a

Every flag is a field of `keras_has.config.TrainConfig` or
`keras_has.config.commands.TrainOptions` (`keras_has.cli.config_flags`);
flags after --flagfile override it. The flags become a validated config before anything
is written; then `keras_has.train.trainer.train` runs. Running the same command again
resumes an interrupted run from its last finished epoch.
"""
from __future__ import annotations

from keras_has.cli import common, config_flags
from keras_has.config.commands import TrainOptions
from keras_has.config import TrainConfig

config_flags.define_config_flags(TrainConfig)
config_flags.define_config_flags(TrainOptions)


def _train(command, config, options, _):
    from keras_has.train.trainer import train

    result = train(config, overwrite=options.overwrite)
    print(f"{command}: done; replicas={result.num_replicas} "
          f"global_batch={result.global_batch_size} epochs_run={result.epochs_run} "
          f"epochs_logged={len(result.history.get('epoch', []))} model={result.model_path}",
          flush=True)
    if result.skipped_images:
        counts = ", ".join(f"{len(ids)} in {split}" for split, ids in
                           result.skipped_images.items())
        print(f"{command}: skipped unreadable images ({counts}), listed in "
              f"{result.output_dir}/skipped_images.json", flush=True)
    return 0


def main(argv) -> int:
    return common.run_command(argv, (TrainConfig, TrainOptions), _train)
