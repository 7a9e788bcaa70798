"""`keras-has predict`: classes, boxes and CAM overlays for image files.

    keras-has predict --model_path=exports/has32/1 --output_dir=preds photos/ 'more/*.jpg' one.png
    keras-has predict --model_path=runs/has32/model.keras --output_dir=preds --inputs=photos/

Inputs are files, globs (quote them; `**` recurses) or folders (searched recursively
for .jpg, .jpeg and .png). Writes OUTPUT_DIR/predictions.jsonl (one JSON object per
image) and, unless --nooverlays, OUTPUT_DIR/overlays/<name>.png. A file that cannot be
read or decoded (not an image, corrupt, truncated) is reported by name on stderr and
skipped; the others are still answered, and the exit status is then 1. The output
folder is locked for the run: a second predict into it fails at once. With a .keras
model the settings come from its training run folder (as for `keras-has export`); a
SavedModel carries its own. The logic is `keras_has.serve.predict`.
"""
from __future__ import annotations

import os
import sys

from absl import flags

from keras_has.cli import common, config_flags
from keras_has.config.commands import PredictConfig, cam_output_value

config_flags.define_config_flags(PredictConfig)

FLAGS = flags.FLAGS


def predict(config: PredictConfig):
    """Predicts as `config` says; returns `(records, skipped, unmatched)`."""
    from keras_has.serve import predict as predict_lib
    from keras_has.train import run_folder

    predict_lib.model_kind(config.model_path)  # before any input is listed
    files, unmatched = predict_lib.expand_inputs(list(config.inputs))
    for pattern in unmatched:
        print(f"skipped {pattern}: no such file, or no images matched", file=sys.stderr)
    if not files:
        raise ValueError(f"inputs: no images found in {list(config.inputs)}")
    settings = None
    if config.model_path.endswith(".keras"):
        settings = dict(train_config=config.train_config, image_size=config.image_size,
                        mean=config.mean, std=config.std,
                        class_names=run_folder.class_names_arg(config.class_names),
                        source=config.source, preprocessing_mode=config.preprocessing)
    elif (config.cam_method, config.cam_layer, config.cam_normalization, config.cam_output,
          config.preprocessing) != ("cam", None, "minmax", None, None):
        raise ValueError(f"cam_method / cam_layer / cam_normalization / cam_output / "
                         f"preprocessing: "
                         f"{config.model_path} is an export, which carries its own; pass "
                         "them to export, or predict with the .keras model")
    predictor = predict_lib.load_predictor(
        config.model_path, settings, config.cam_threshold, config.top_k,
        config.fold_batch_norm, cam_method=config.cam_method, cam_layer=config.cam_layer,
        cam_normalization=config.cam_normalization,
        cam_output=cam_output_value(config.cam_output))
    with run_folder.RunLock(config.output_dir):  # one writer per output folder
        records, skipped = predict_lib.predict_files(
            predictor, files, config.output_dir, config.batch_size, config.overlays,
            progress=progress_printer())
    return records, skipped, unmatched


def progress_printer(stream=None):
    """A `progress(done, total)` for `predict_files`: `predicted 48/1000 images` on
    stderr, rewritten in place on a terminal, else a line each tenth (and at the end)."""
    last = [-1]

    def progress(done: int, total: int) -> None:
        out = stream or sys.stderr
        if out.isatty():
            print(f"\rpredicted {done}/{total} images", end="\n" if done == total else "",
                  file=out, flush=True)
            return
        tenth = 10 * done // max(total, 1)
        if done == total or tenth != last[0]:
            print(f"predicted {done}/{total} images", file=out, flush=True)
        last[0] = tenth

    return progress


def _predict(command, config, _):
    records, skipped, unmatched = predict(config)
    print(f"{command}: {len(records)} image(s) predicted, "
          f"{len(skipped) + len(unmatched)} skipped; "
          f"wrote {os.path.join(config.output_dir, 'predictions.jsonl')}")
    return 1 if skipped or unmatched else 0


def main(argv) -> int:
    # Positional arguments are inputs too (`common.run_command` refuses any).
    if len(argv) > 1:
        FLAGS.inputs = tuple(FLAGS.inputs) + tuple(argv[1:])
    return common.run_command(argv[:1], (PredictConfig,), _predict)
