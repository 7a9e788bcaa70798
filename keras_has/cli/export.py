"""`keras-has export`: a trained model as a SavedModel localizer (image in; class, score,
box and CAM out).

    keras-has export --model_path=runs/alexnet_has_32/model.keras --output_dir=exports/has32/1
    keras-has export --model_path=model.keras --output_dir=out --image_size=224 \\
        --mean=123.7,116.3,103.5 --std=58.4,57.1,57.4 --class_names=class_names.txt

Every flag is a field of `keras_has.config.commands.ExportConfig`. Settings not given come
from the model's training run folder (`keras_has.train.run_folder.read_run_settings`): the
image size from its config.json, the input preprocessing from its preprocessing.json
(recorded by training: dataset statistics, or the backbone's keras.applications
preprocessing for a fine-tuned pretrained model), the class names from its
class_names.txt. Only a run that recorded none of them has its statistics measured on
--source. See keras_has.serve.export.
"""
from __future__ import annotations

from keras_has.cli import common, config_flags
from keras_has.config.commands import ExportConfig, cam_output_value

config_flags.define_config_flags(ExportConfig)


def export(config: ExportConfig):
    """Exports as `config` says; returns the export directory."""
    from keras_has.serve.loading import load_keras_model, model_image_size
    from keras_has.train import run_folder
    from keras_has.serve.export import export_saved_model

    model = load_keras_model(config.model_path)
    settings = run_folder.read_run_settings(
        model_path=config.model_path, train_config=config.train_config,
        image_size=config.image_size, mean=config.mean, std=config.std,
        class_names=run_folder.class_names_arg(config.class_names), source=config.source,
        split=config.split, model_image_size=model_image_size(model),
        preprocessing_mode=config.preprocessing)
    return export_saved_model(
        model, config.output_dir, image_size=settings["image_size"],
        preprocessing=settings["preprocessing"], class_names=settings["class_names"],
        cam_threshold=config.cam_threshold, top_k=config.top_k, config=settings["config"],
        overwrite=config.overwrite, cam_signature=config.cam_signature,
        max_image_pixels=config.max_image_pixels, fold_batch_norm=config.fold_batch_norm,
        cam_method=config.cam_method, cam_layer=config.cam_layer,
        cam_normalization=config.cam_normalization,
        cam_output=cam_output_value(config.cam_output))


def _export(command, config, _):
    path = export(config)
    import tensorflow as tf

    signatures = ", ".join(sorted(tf.saved_model.load(str(path)).signatures))
    print(f"{command}: exported {config.model_path} to {path} (signatures {signatures})")
    return 0


def main(argv) -> int:
    return common.run_command(argv, (ExportConfig,), _export)
