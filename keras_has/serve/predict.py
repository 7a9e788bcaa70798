"""Classify and localize image files with an export or a `.keras` model.

`load_predictor(model_path)` gives a function from encoded images to the
`serving_default` outputs (`keras_has.serve.signatures`): a SavedModel's signature, or the same
functions built in memory around a `.keras` model with its training run's settings
(`keras_has.train.run_folder.read_run_settings`). `predict_files(predictor, files,
output_dir)` runs it over files in batches and writes `predictions.jsonl` (one JSON
object per image: `file`, `class_id`, `class_name`, `score`, `box` = x0, y0, x1, y1
inclusive pixels of the image, `width` and `height` of the image, `top_k`, `overlay`) and
`overlays/<name>.png` (the image with its CAM and box, `keras_has.localize.visualize.overlay_cam`).

A file that cannot be read, or that the model marks invalid (`valid` false: not an
image, too large, corrupt or truncated), is reported by name with the reason and
skipped; the other images of its batch are answered.
"""
from __future__ import annotations

import glob
import json
import os
import pathlib

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "expand_inputs", "model_kind", "load_predictor",
           "overlay_image", "predict_files"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def expand_inputs(patterns):
    """Files named by paths, globs and folders, in order, without repeats.

    Folders are searched recursively for `IMAGE_EXTENSIONS`; globs may use `**`.

    Returns:
        `(files, unmatched)`: lists of str; `unmatched` are patterns that named nothing.
    """
    files, unmatched, seen = [], [], set()
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                str(p) for p in pathlib.Path(pattern).rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        else:
            found = [pattern] if os.path.exists(pattern) else []
        if not found:
            unmatched.append(pattern)
        for path in found:
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files, unmatched


def model_kind(model_path) -> str:
    """`"saved_model"` for an export's directory, `"keras"` for a `.keras` file.

    Raises:
        ValueError naming `model_path` when it is neither.
    """
    model_path = os.fspath(model_path)
    if os.path.isdir(model_path) and os.path.isfile(os.path.join(model_path, "saved_model.pb")):
        return "saved_model"
    if os.path.isfile(model_path) and model_path.endswith(".keras"):
        return "keras"
    raise ValueError(f"model_path: expected a SavedModel directory or a .keras file, "
                     f"received {model_path!r}")


def load_predictor(model_path, settings=None, cam_threshold=0.2, top_k=5,
                   fold_batch_norm=True, cam_method="cam", cam_layer=None,
                   cam_normalization="minmax", cam_output=None):
    """A function `list of encoded images -> dict of NumPy outputs` (`serving_default`'s).

    Args:
        model_path: an exported SavedModel directory or a `.keras` file.
        settings: for `.keras` only, keyword arguments of
            `keras_has.train.run_folder.read_run_settings` (`model_path` is filled in).
        cam_threshold, top_k: for `.keras` only (an export carries its own).
        fold_batch_norm: for `.keras` only: answer with the batch norms folded into the
            convolutions, as its export does (`keras_has.models.fold_batch_norms`).
        cam_method, cam_layer, cam_normalization, cam_output: for `.keras` only: the CAM
            method, its layer, the map normalisation and the class-score output
            (`keras_has.serve.signatures.ServingConfig`).

    Raises:
        ValueError naming `model_path` when it is neither.
    """
    import tensorflow as tf

    model_path = os.fspath(model_path)
    if model_kind(model_path) == "saved_model":
        from keras_has.serve.signatures import SERVING_DEFAULT

        signature = tf.saved_model.load(model_path).signatures[SERVING_DEFAULT]
        call = lambda blobs: signature(images_bytes=tf.constant(blobs, tf.string))  # noqa: E731
    else:
        from keras_has import models
        from keras_has.serve.loading import load_keras_model, model_image_size
        from keras_has.train import run_folder
        from keras_has.serve import signatures as serving

        model = load_keras_model(model_path)
        resolved = run_folder.read_run_settings(**{
            "model_path": model_path, "model_image_size": model_image_size(model),
            **(settings or {})})
        if fold_batch_norm:
            model = models.fold_batch_norms(model)
        config = serving.make_serving_config(
            model, image_size=resolved["image_size"], preprocessing=resolved["preprocessing"],
            class_names=resolved["class_names"], cam_threshold=cam_threshold, top_k=top_k,
            cam_method=cam_method, cam_layer=cam_layer, cam_normalization=cam_normalization,
            cam_output=cam_output)
        function = serving.ServingFunctions(model, config).serving_default
        call = lambda blobs: function(tf.constant(blobs, tf.string))  # noqa: E731
    return lambda blobs: {key: value.numpy() for key, value in call(blobs).items()}


def overlay_image(data: bytes, cam, box, label: str) -> np.ndarray:
    """The picture of one prediction: RGB uint8 `[H, W, 3]`.

    Args:
        data: the encoded image (decoded here at its own size).
        cam: raw CAM `[h, w]` (upsampled and min-max normalised here).
        box: inclusive `x0, y0, x1, y1` in pixels of the image.
        label: text drawn above the box.
    """
    import cv2
    import tensorflow as tf

    from keras_has.localize import boxes as localization
    from keras_has.localize import visualize

    image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    height, width = image.shape[:2]
    heat = localization.normalize_cams(localization.resize_cams(
        np.asarray(cam, np.float32)[None], (height, width)))[0]
    thickness = max(1, round(max(height, width) / 200))
    out = visualize.overlay_cam(image, heat, pred_boxes=[box], thickness=thickness)
    scale = max(0.4, max(height, width) / 600)
    weight = max(1, thickness // 2)
    (_, text_height), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
    # Above the box when the label fits there, else below it, else at the image's top;
    # always whole in the image and off the box's lines where there is room.
    x = min(max(int(box[0]) + 2, 2), width - 2)
    above = int(box[1]) - base - 3
    below = int(box[3]) + thickness + text_height + 3
    if above - text_height - 2 >= 0:
        y = above
    elif below + base < height:
        y = below
    else:
        y = text_height + 2
    visualize.put_text(out, label, (x, y), scale=scale, color=(255, 255, 255),
                       thickness=weight, background=(30, 30, 30))
    return out


def predict_files(predictor, files, output_dir, batch_size=16, overlays=True, report=None,
                  progress=None):
    """Runs `predictor` over `files` in batches; writes predictions.jsonl and overlays.

    A file that cannot be read, or that the predictor marks invalid, is reported through
    `report(file, reason)` (default: a line on stderr) and skipped; the rest are
    processed. `progress(done, total)` (optional) is called after every batch with the
    number of files handled so far. `predictions.jsonl` is written atomically at the end.

    Returns:
        `(records, skipped)`: the JSON records written, and `[(file, reason)]`.
    """
    import sys

    from keras_has.localize import visualize
    from keras_has.util.files import atomic_write_bytes

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")
    report = report or (lambda file, reason: print(f"skipped {file}: {reason}", file=sys.stderr))
    output_dir = pathlib.Path(output_dir)
    overlay_dir = output_dir / "overlays"
    (overlay_dir if overlays else output_dir).mkdir(parents=True, exist_ok=True)
    records, skipped, used_names = [], [], set()

    def skip(file, reason):
        skipped.append((file, reason))
        report(file, reason)

    def emit(file, data, out, i):
        top = [{"class_id": int(c), "class_name": n.decode("utf-8"), "score": float(s)}
               for c, n, s in zip(out["classes"][i], out["class_names"][i], out["scores"][i])]
        record = {"file": file, **top[0], "box": [int(v) for v in out["boxes"][i]],
                  "width": int(out["image_sizes"][i][1]),
                  "height": int(out["image_sizes"][i][0]), "top_k": top,
                  "overlay": None}
        if overlays:
            stem = pathlib.Path(file).stem or "image"
            name, k = stem, 1
            while name in used_names:
                k += 1
                name = f"{stem}_{k}"
            used_names.add(name)
            label = f"{top[0]['class_name']} {top[0]['score']:.2f}"
            path = overlay_dir / f"{name}.png"
            visualize.save_png(path, overlay_image(data, out["cams"][i], record["box"], label))
            record["overlay"] = str(path)
        records.append(record)

    for begin in range(0, len(files), batch_size):
        batch = []
        for file in files[begin:begin + batch_size]:
            try:
                with open(file, "rb") as f:
                    batch.append((file, f.read()))
            except OSError as error:
                skip(file, error.strerror or str(error))
        if not batch:
            if progress is not None:
                progress(min(begin + batch_size, len(files)), len(files))
            continue
        out = predictor([data for _, data in batch])
        valid = out.get("valid", np.ones(len(batch), bool))  # exports older than `valid`
        for i, (file, data) in enumerate(batch):
            if bool(valid[i]):
                emit(file, data, out, i)
            else:
                skip(file, out["error"][i].decode("utf-8"))
        if progress is not None:
            progress(min(begin + batch_size, len(files)), len(files))
    lines = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write_bytes(output_dir / "predictions.jsonl", lines.encode("utf-8"))
    return records, skipped
