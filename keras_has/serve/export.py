"""SavedModel export: a trained model becomes a self-contained localizer.

`export_saved_model(model, export_dir, ...)` writes the serving functions of
`keras_has.serve.signatures` (signatures `serving_default` on image bytes, `serving_images` on
uint8 pixels, and by default `cams_for_labels` for evaluating the export) with the run's
input preprocessing in the graph. The SavedModel loads with `tf.saved_model.load` in any
TensorFlow program (no keras_has, no Keras needed) and serves under TensorFlow Serving.
Outputs, the bad-input contract (`valid` / `error` per image) and the box rule are
described in `keras_has.serve.signatures`; docs/design/export.md has the details and checks.

The settings of an export come from the training run's folder
(`keras_has.train.run_folder.read_run_settings`: image size from `config.json`, the input
preprocessing from `preprocessing.json`, class names from `class_names.txt`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any

from keras_has.config.commands import check_export_target
from keras_has.util.files import staging_dir
from keras_has.serve.signatures import (CAM_FEATURES, CAMS_FOR_LABELS, CLASS_NAMES_ASSET,
                               DEFAULT_MAX_IMAGE_PIXELS, PREPROCESSING_ASSET, SERVING_DEFAULT, SERVING_IMAGES,
                               ServingFunctions, make_serving_config)

__all__ = ["export_saved_model"]


def _config_to_json(config: Any) -> str:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise ValueError(
            f"config: expected a dict or a dataclass instance, received {type(config).__name__}"
        )
    return json.dumps(config, indent=2, sort_keys=True, default=str)


def export_saved_model(
    model,
    export_dir,
    *,
    image_size,
    mean=None,
    std=None,
    class_names=None,
    cam_threshold: float = 0.2,
    top_k: int = 5,
    config: Any = None,
    overwrite: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    cam_signature: bool = True,
    preprocessing=None,
    fold_batch_norm: bool = True,
    cam_method: str = "cam",
    cam_layer: str | None = None,
    cam_normalization: str = "minmax",
    cam_output=None,
) -> pathlib.Path:
    """Exports `model` as a SavedModel localizer with serving signatures, atomically.

    See `keras_has.serve.signatures` for the signatures and outputs. The SavedModel is written
    to a temporary directory beside `export_dir` and renamed into place, so readers
    never see a partial export. Assets: `assets/class_names.txt` (one per line),
    `assets/preprocessing.json` (image_size, mean, std, cam_threshold, ...) and, if
    `config` is given, `assets/training_config.json`.

    Args:
        model: a Keras classifier, input `[B, H, W, 3]` (after `preprocessing`): a
            keras-has model, or any model `cam_method` applies to
            (`keras_has.localize.cams.compute_cams`).
        export_dir: directory to create.
        image_size: int or `(height, width)` the model was trained at.
        mean, std: per-channel normalisation in [0, 255] pixel scale (3 floats each),
            RGB dataset statistics; or instead
        preprocessing: the training run's `keras_has.data.preprocessing.Preprocessing`
            (recorded in `assets/preprocessing.json`).
        class_names: K names; default `"0"`, ..., `"K-1"`.
        cam_threshold: fraction of each CAM's max, in [0, 1].
        top_k: classes returned per image (capped at K).
        config: training config (dict or dataclass) saved as JSON; optional.
        overwrite: replace an existing `export_dir` that is an earlier export (or an
            empty folder); a regular file or a folder of other content is never replaced
            (FileExistsError), nor anything without `overwrite`.
        max_image_pixels: `serving_default` marks larger images invalid before
            decoding them.
        cam_signature: add the evaluation signatures `cams_for_labels` (and, for `cam`
            on a keras-has model, `cam_features`; `keras_has.serve.signatures`), which
            `keras-has evaluate` needs to evaluate the export.
        cam_method, cam_layer, cam_normalization: the CAM method, its layer and the
            map normalisation inside the signatures (recorded in preprocessing.json).
        cam_output: the class-score output of a multi-output model (index or name).
        fold_batch_norm: serve `keras_has.models.fold_batch_norms(model)`: every batch
            norm that follows a convolution folded into it, and the zero paddings that
            `same` padding can do (same outputs up to float
            rounding; MobileNetV2 inference 1.4x (float32) to 2.0x (bfloat16) faster on CPU). `model` is unchanged.

    Returns:
        The export directory as a `pathlib.Path`.
    """
    export_dir = pathlib.Path(export_dir)
    try:
        check_export_target(export_dir, overwrite)
    except ValueError as err:
        raise FileExistsError(str(err).replace("--overwrite", "overwrite=True")) from None
    serving_config = make_serving_config(
        model,
        image_size=image_size,
        mean=mean,
        std=std,
        class_names=class_names,
        cam_threshold=cam_threshold,
        top_k=top_k,
        max_image_pixels=max_image_pixels,
        preprocessing=preprocessing,
        cam_method=cam_method,
        cam_layer=cam_layer,
        cam_normalization=cam_normalization,
        cam_output=cam_output,
    )
    config_json = None if config is None else _config_to_json(config)
    if fold_batch_norm:
        from keras_has.models.folding import fold_batch_norms

        model = fold_batch_norms(model)
    functions = ServingFunctions(model, serving_config)

    import keras

    parent = export_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(staging_dir(parent, export_dir.name))
    try:
        saved = staging / "saved_model"
        archive = keras.export.ExportArchive()
        archive.track(functions.cam_model)
        endpoints = [
            (SERVING_DEFAULT, functions.serving_default),
            (SERVING_IMAGES, functions.serving_images),
        ]
        if cam_signature:
            endpoints.append((CAMS_FOR_LABELS, functions.cams_for_labels))
            if functions.cam_features is not None:
                endpoints.append((CAM_FEATURES, functions.cam_features))
        for name, function in endpoints:
            function.get_concrete_function()  # traced once, from its input_signature
            archive.add_endpoint(name, function)
        archive.write_out(str(saved), verbose=False)
        assets = saved / "assets"
        assets.mkdir(exist_ok=True)
        (assets / CLASS_NAMES_ASSET).write_text(
            "".join(f"{name}\n" for name in serving_config.class_names), encoding="utf-8"
        )
        (assets / PREPROCESSING_ASSET).write_text(
            json.dumps(serving_config.to_json(), indent=2) + "\n", encoding="utf-8"
        )
        if config_json is not None:
            (assets / "training_config.json").write_text(config_json + "\n", encoding="utf-8")
        if export_dir.exists():  # overwrite=True: swap, then delete the old export.
            old = staging / "old"
            os.replace(export_dir, old)
        os.replace(saved, export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir
