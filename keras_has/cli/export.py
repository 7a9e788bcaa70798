"""`keras-has export`: a trained model as a SavedModel localizer (image in; class, score,
box and CAM out).

    keras-has export --model_path=runs/alexnet_has_32/model.keras --output_dir=exports/has32/1
    keras-has export --model_path=model.keras --output_dir=out --image_size=224 \\
        --mean=123.7,116.3,103.5 --std=58.4,57.1,57.4 --class_names=class_names.txt

Settings not given as flags come from the model's training run folder
(`keras_has.run_folder.read_run_settings`): the image size from its config.json, the
input preprocessing from its preprocessing.json (recorded by training: dataset
statistics, or the backbone's keras.applications preprocessing for a fine-tuned
pretrained model), the class names from its class_names.txt. Only a run that recorded
none of them has its statistics measured on --source. See keras_has.export.
"""
from __future__ import annotations

import os

from absl import flags

from keras_has.cli import common

flags.DEFINE_string("model_path", None, "Trained model: a .keras file (required).")
flags.DEFINE_string("output_dir", None, "SavedModel directory to create (required).")
flags.DEFINE_string("train_config", "", "Training config.json (default: the one in the "
                    "model's run folder, if any).")
flags.DEFINE_integer("image_size", 0, "Model input side (0: from the training config).")
flags.DEFINE_list("mean", [], "Per-channel mean in [0, 255], 3 values, with --std "
                  "(empty: the run's recorded preprocessing).")
flags.DEFINE_list("std", [], "Per-channel std in [0, 255], 3 values, with --mean.")
flags.DEFINE_string("source", "", "Data source to measure mean/std on or take class names "
                    "from when the run recorded none (empty: the config's).")
flags.DEFINE_string("split", "", "Split the statistics are measured on in that case "
                    "(empty: the config's training split).")
flags.DEFINE_string("class_names", "", "Comma-separated names or a one-name-per-line file "
                    "(empty: the run's class_names.txt, else the source's).")
flags.DEFINE_float("cam_threshold", 0.2, "CAM threshold, a fraction of each CAM's max.")
flags.DEFINE_integer("top_k", 5, "Classes returned per image.")
flags.DEFINE_integer("max_image_pixels", 50_000_000,
                     "Largest height * width decoded from bytes (larger: marked invalid).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")
flags.DEFINE_bool("cam_signature", True, "Add the cam_features signature that "
                  "`keras-has evaluate` uses to evaluate the export.")

FLAGS = flags.FLAGS


def export(fv=FLAGS):
    """Exports as the parsed flags `fv` say; returns the export directory."""
    for name in ("model_path", "output_dir"):
        if not fv[name].value:
            raise ValueError(f"{name}: required (--{name}), received nothing")
    if not os.path.isfile(fv.model_path) or not fv.model_path.endswith(".keras"):
        raise ValueError(f"model_path: expected a .keras file, received {fv.model_path!r}")
    if os.path.exists(fv.output_dir) and not fv.overwrite:
        raise ValueError(f"output_dir: {fv.output_dir} already exists; pass --overwrite to "
                         "replace it")
    import keras

    import keras_has.models  # noqa: F401  (registers the custom layers for loading)
    from keras_has import run_folder
    from keras_has.export import export_saved_model

    settings = run_folder.read_run_settings(
        model_path=fv.model_path, train_config=fv.train_config or None,
        image_size=fv.image_size or None, mean=fv.mean or None, std=fv.std or None,
        class_names=run_folder.class_names_arg(fv.class_names), source=fv.source or None,
        split=fv.split or None)
    model = keras.saving.load_model(fv.model_path, compile=False)
    return export_saved_model(
        model, fv.output_dir, image_size=settings["image_size"],
        preprocessing=settings["preprocessing"], class_names=settings["class_names"],
        cam_threshold=fv.cam_threshold, top_k=fv.top_k, config=settings["config"],
        overwrite=fv.overwrite, cam_signature=fv.cam_signature,
        max_image_pixels=fv.max_image_pixels)


def _export(command, _):
    path = export(FLAGS)
    signatures = "serving_default, serving_images" + (", cam_features"
                                                      if FLAGS.cam_signature else "")
    print(f"{command}: exported {FLAGS.model_path} to {path} (signatures {signatures})")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (), _export)
