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
SavedModel carries its own. The logic is `keras_has.predict`.
"""
from __future__ import annotations

import os
import sys

from absl import flags

from keras_has.cli import common

flags.DEFINE_string("model_path", None, "Exported SavedModel directory or a .keras model "
                    "(required).")
flags.DEFINE_list("inputs", [], "Image files, globs or folders "
                  "(also accepted as positional arguments).")
flags.DEFINE_string("output_dir", None, "Where predictions.jsonl and overlays/ are written "
                    "(required).")
flags.DEFINE_integer("batch_size", 16, "Images per call of the model.")
flags.DEFINE_bool("overlays", True, "Write PNG overlays (CAM heatmap and box).")
# Only for a .keras model (a SavedModel stores its own):
flags.DEFINE_string("train_config", "",
                    ".keras only: training config.json (default: the run folder's).")
flags.DEFINE_integer("image_size", 0,
                     ".keras only: model input side (0: from the training config).")
flags.DEFINE_list("mean", [], ".keras only: per-channel mean in [0, 255], with --std.")
flags.DEFINE_list("std", [], ".keras only: per-channel std in [0, 255], with --mean.")
flags.DEFINE_string("source", "", ".keras only: data source for mean/std/class names when "
                    "the run recorded none.")
flags.DEFINE_string("class_names", "", ".keras only: comma-separated names or a names file.")
flags.DEFINE_float("cam_threshold", 0.2, ".keras only: CAM threshold (fraction of the max).")
flags.DEFINE_integer("top_k", 5, ".keras only: classes reported per image.")

FLAGS = flags.FLAGS


def predict(patterns, fv=FLAGS):
    """Predicts as the parsed flags `fv` say; returns `(records, skipped, unmatched)`."""
    from keras_has import predict as predict_lib
    from keras_has import run_folder

    for name in ("model_path", "output_dir"):
        if not fv[name].value:
            raise ValueError(f"{name}: required (--{name}), received nothing")
    if not patterns:
        raise ValueError("inputs: expected image files, globs or folders, received none")
    if fv.batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {fv.batch_size}")
    predict_lib.model_kind(fv.model_path)  # before any input is listed
    files, unmatched = predict_lib.expand_inputs(patterns)
    for pattern in unmatched:
        print(f"skipped {pattern}: no such file, or no images matched", file=sys.stderr)
    if not files:
        raise ValueError(f"inputs: no images found in {patterns}")
    settings = None
    if fv.model_path.endswith(".keras"):
        settings = dict(train_config=fv.train_config or None, image_size=fv.image_size or None,
                        mean=fv.mean or None, std=fv.std or None,
                        class_names=run_folder.class_names_arg(fv.class_names),
                        source=fv.source or None)
    predictor = predict_lib.load_predictor(fv.model_path, settings, fv.cam_threshold, fv.top_k)
    with run_folder.RunLock(fv.output_dir):  # one writer per output folder
        records, skipped = predict_lib.predict_files(predictor, files, fv.output_dir,
                                                     fv.batch_size, fv.overlays)
    return records, skipped, unmatched


def _predict(command, patterns):
    records, skipped, unmatched = predict(patterns, FLAGS)
    print(f"{command}: {len(records)} image(s) predicted, "
          f"{len(skipped) + len(unmatched)} skipped; "
          f"wrote {os.path.join(FLAGS.output_dir, 'predictions.jsonl')}")
    return 1 if skipped or unmatched else 0


def main(argv) -> int:
    # Positional arguments are inputs (`common.run_command` refuses any).
    command = common.command_name(argv)
    common.quiet_unless_verbosity(FLAGS)
    status = common.run_reporting_errors(command, _predict, command,
                                         list(FLAGS.inputs) + list(argv[1:]))
    return 2 if status is None else status
