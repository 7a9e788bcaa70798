"""Classify and localize images with an exported SavedModel or a .keras model.

Usage:
  python scripts/predict.py --model=exports/has32 --output_dir=preds photos/ 'more/*.jpg' one.png
  python scripts/predict.py --model=runs/has32/model.keras --output_dir=preds --inputs=photos/

Inputs are files, globs (quote them; `**` recurses) or folders (searched recursively
for .jpg, .jpeg and .png). Writes `OUTPUT_DIR/predictions.jsonl`, one JSON object per
image (`file`, `class_id`, `class_name`, `score`, `box` = x0, y0, x1, y1 inclusive pixels
of the image, `image_size` = height, width, `top_k`, `overlay`), and, unless
--nooverlays, `OUTPUT_DIR/overlays/<name>.png`: the image with its CAM as a heatmap and
the box. A corrupt or unreadable file is reported by name on stderr and skipped; the
others are still processed, and the exit status is then 1.

With a .keras model the preprocessing comes from flags or from the training run (its
recorded preprocessing.json, see scripts/export.py); a SavedModel carries its own.
"""
import glob
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_has.io_utils import atomic_write_bytes  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

def define_flags():
    """Defines the flags (only when run as a script, so that importing this file for
    its functions defines none)."""
    flags.DEFINE_string("model", None, "Exported SavedModel directory or a .keras model.")
    flags.DEFINE_list("inputs", [], "Image files, globs or folders "
                      "(also accepted as positional arguments).")
    flags.DEFINE_string("output_dir", None, "Where predictions.jsonl and overlays/ are written.")
    flags.DEFINE_integer("batch_size", 16, "Images per call of the model.", lower_bound=1)
    flags.DEFINE_bool("overlays", True, "Write PNG overlays (CAM heatmap and box).")
    # Only for a .keras model (a SavedModel stores its own):
    flags.DEFINE_string("train_config", "",
                        ".keras only: training config.json (default: beside the model).")
    flags.DEFINE_integer("image_size", 0,
                         ".keras only: model input side (0: from the training config).")
    flags.DEFINE_list("mean", [], ".keras only: per-channel mean in [0, 255].")
    flags.DEFINE_list("std", [], ".keras only: per-channel std in [0, 255].")
    flags.DEFINE_string("source", "", ".keras only: data source for mean/std/class names.")
    flags.DEFINE_string("class_names", "", ".keras only: comma-separated names or a names file.")
    flags.DEFINE_float("cam_threshold", 0.2, ".keras only: CAM threshold (fraction of the max).")
    flags.DEFINE_integer("top_k", 5, ".keras only: classes reported per image.")


FLAGS = flags.FLAGS


def expand_inputs(patterns):
    """Files named by paths, globs and folders, in order, without repeats.

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


def load_predictor(model_path, settings=None, cam_threshold=0.2, top_k=5):
    """A function `list of encoded images -> dict of NumPy outputs` (the serving_default outputs).

    Args:
        model_path: an exported SavedModel directory or a `.keras` file.
        settings: for `.keras` only, keyword arguments of
            `keras_has.export.resolve_serving_settings`.
        cam_threshold, top_k: for `.keras` only.
    """
    if os.path.isdir(model_path) and os.path.isfile(os.path.join(model_path, "saved_model.pb")):
        signature = tf.saved_model.load(model_path).signatures["serving_default"]
        call = lambda blobs: signature(images_bytes=tf.constant(blobs, tf.string))  # noqa: E731
    elif os.path.isfile(model_path) and model_path.endswith(".keras"):
        import keras

        import keras_has.models  # noqa: F401  (registers the custom layers for loading)
        from keras_has import export

        resolved = export.resolve_serving_settings(**(settings or {}))
        model = keras.saving.load_model(model_path, compile=False)
        config = export.make_serving_config(
            model, image_size=resolved["image_size"], preprocessing=resolved["preprocessing"],
            class_names=resolved["class_names"], cam_threshold=cam_threshold, top_k=top_k)
        function = export.ServingFunctions(model, config).serving_default
        call = lambda blobs: function(tf.constant(blobs, tf.string))  # noqa: E731
    else:
        raise ValueError(
            f"model: expected a SavedModel directory or a .keras file, received {model_path!r}")
    return lambda blobs: {key: value.numpy() for key, value in call(blobs).items()}


def _reason(error):
    """The informative line of a TensorFlow error message."""
    lines = [line.strip() for line in str(error).splitlines()]
    noise = ("Graph execution error", "Detected at node", "[[", "<stack traces")
    lines = [line for line in lines if line and not line.startswith(noise)]
    return lines[0] if lines else type(error).__name__


def draw_overlay(image, cam, box, label):
    """RGB uint8 image + raw CAM `[h, w]` + inclusive box -> BGR uint8 overlay."""
    height, width = image.shape[:2]
    cam = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    span = float(cam.max() - cam.min())
    gray = np.zeros_like(cam) if span <= 0 or not np.isfinite(span) else (cam - cam.min()) / span
    heat = cv2.applyColorMap((gray * 255).astype(np.uint8), cv2.COLORMAP_JET)
    out = cv2.addWeighted(np.ascontiguousarray(image[:, :, ::-1]), 0.5, heat, 0.5, 0.0)
    thickness = max(1, round(max(height, width) / 200))
    x0, y0, x1, y1 = (int(v) for v in box)
    cv2.rectangle(out, (x0, y0), (x1, y1), (0, 255, 0), thickness)
    scale = max(0.4, max(height, width) / 600)
    cv2.putText(out, label, (x0 + 2, max(y0 - 4, int(14 * scale))), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, thickness // 2), cv2.LINE_AA)
    return out


def predict_files(predictor, files, output_dir, batch_size=16, overlays=True, report=None):
    """Runs `predictor` over `files` in batches; writes predictions.jsonl and overlays.

    A file that cannot be read or decoded is reported through `report(file, reason)`
    and skipped; the rest are processed.

    Returns:
        `(records, skipped)`: the JSON records written, and `[(file, reason)]`.
    """
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
                  "image_size": [int(v) for v in out["image_sizes"][i]], "top_k": top,
                  "overlay": None}
        if overlays:
            stem = pathlib.Path(file).stem or "image"
            name, k = stem, 1
            while name in used_names:
                k += 1
                name = f"{stem}_{k}"
            used_names.add(name)
            image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
            label = f"{top[0]['class_name']} {top[0]['score']:.2f}"
            drawn = draw_overlay(image, out["cams"][i], record["box"], label)
            png = cv2.imencode(".png", drawn)[1].tobytes()
            path = overlay_dir / f"{name}.png"
            atomic_write_bytes(path, png)
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
            continue
        try:
            out = predictor([data for _, data in batch])
            for i, (file, data) in enumerate(batch):
                emit(file, data, out, i)
        except tf.errors.InvalidArgumentError:
            for file, data in batch:  # find the bad file(s): one at a time
                try:
                    out = predictor([data])
                except tf.errors.InvalidArgumentError as error:
                    skip(file, _reason(error))
                    continue
                emit(file, data, out, 0)
    lines = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write_bytes(output_dir / "predictions.jsonl", lines.encode("utf-8"))
    return records, skipped


def main(argv):
    patterns = list(FLAGS.inputs) + list(argv[1:])
    if not FLAGS.model or not FLAGS.output_dir:
        raise app.UsageError("--model and --output_dir are required")
    if not patterns:
        raise app.UsageError("no inputs: give image files, globs or folders")
    files, unmatched = expand_inputs(patterns)
    for pattern in unmatched:
        print(f"skipped {pattern}: no such file, or no images matched", file=sys.stderr)
    if not files:
        print("predict.py: no images to process", file=sys.stderr)
        return 1
    settings = None
    if FLAGS.model.endswith(".keras"):
        class_names = FLAGS.class_names or None
        if class_names and not os.path.isfile(class_names):
            class_names = [name.strip() for name in class_names.split(",")]
        settings = dict(
            model_path=FLAGS.model, train_config=FLAGS.train_config or None,
            image_size=FLAGS.image_size or None, mean=FLAGS.mean or None, std=FLAGS.std or None,
            class_names=class_names, source=FLAGS.source or None)
    try:
        predictor = load_predictor(FLAGS.model, settings, FLAGS.cam_threshold, FLAGS.top_k)
    except ValueError as error:
        print(f"predict.py: {error}", file=sys.stderr)
        return 2
    from keras_has.run_folder import RunFolderBusy, RunLock

    try:  # one writer per output folder: two runs would interleave their files
        with RunLock(FLAGS.output_dir):
            records, skipped = predict_files(predictor, files, FLAGS.output_dir,
                                             FLAGS.batch_size, FLAGS.overlays)
    except RunFolderBusy as error:
        print(f"predict.py: {error}", file=sys.stderr)
        return 2
    print(f"{len(records)} image(s) predicted, {len(skipped) + len(unmatched)} skipped; "
          f"wrote {os.path.join(FLAGS.output_dir, 'predictions.jsonl')}")
    return 1 if skipped or unmatched else 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
