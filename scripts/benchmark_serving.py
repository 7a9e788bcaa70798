"""Serving overhead: the exported SavedModel's signatures against a bare Keras model call.

Exports `--model` (random weights; speed does not depend on training) at
`--image_size`, then, on the same images, measures in one run:

  keras (bare)        the Keras model on preprocessed (resized, normalised) float
                      images, compiled once with tf.function: the floor
  serving_default     the loaded SavedModel on JPEG bytes: decode, resize, normalise,
                      model, CAM, box extraction, rescaling
  serving_images      the loaded SavedModel on uint8 pixels (no decoding)
  box extraction      `largest_region_boxes` alone on the upsampled CAMs

Reported: batch-1 latency p50 and p99 (ms) and batch-`--batch` throughput (images/s),
and the ratio of each signature's batch-1 p50 to the bare call's (target <= 1.20 for
serving_default on `--image_size` JPEGs). Methods are timed round-robin (one call of
each per round) so that a busy machine slows them alike.

Images: real photos from the shared Oxford-IIIT Pet subset when present (re-encoded as
JPEG at `--image_size`, and also at their own size for information), else synthetic
smooth images.

Usage:
  python scripts/benchmark_serving.py --model=alexnet_gap --image_size=224 --rounds=100
"""
import glob
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_has.serve import export
from keras_has.localize import boxes_tf as localization_tf
from keras_has.serve import signatures as serving
from keras_has.models import get_model  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "alexnet_gap", "Model name (keras_has.models.list_models()).")
flags.DEFINE_integer("image_size", 224, "Model input side.", lower_bound=8)
flags.DEFINE_integer("num_classes", 200, "Classifier size.", lower_bound=1)
flags.DEFINE_integer("rounds", 100, "Timed batch-1 rounds (p50/p99 over them).", lower_bound=5)
flags.DEFINE_integer("batch", 32, "Batch size of the throughput measurement.", lower_bound=1)
flags.DEFINE_integer("batch_rounds", 5, "Timed rounds of the batch measurement.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed calls of each method first.", lower_bound=1)
PETS3_IMAGES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "pets3" / "images"
flags.DEFINE_string("images", str(PETS3_IMAGES),
                    "Folder of JPEGs to use (synthetic images when missing).")
flags.DEFINE_integer("seed", 0, "Seed of the model weights and the synthetic images.")

MEAN = (123.7, 116.3, 103.5)
STD = (58.4, 57.1, 57.4)


def load_images(count, size):
    """`count` RGB uint8 photos (any size) and JPEG bytes of them at size x size."""
    paths = sorted(glob.glob(os.path.join(FLAGS.images, "*.jpg")))[:count]
    if len(paths) == count:
        originals = [cv2.imread(p, cv2.IMREAD_COLOR)[:, :, ::-1] for p in paths]
        source = f"{count} photos from {FLAGS.images}"
    else:
        rng = np.random.default_rng(FLAGS.seed)
        originals = [cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (500, 375),
                                interpolation=cv2.INTER_CUBIC) for _ in range(count)]
        source = f"{count} synthetic 500x375 images"
    square = [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in originals]
    def jpeg(image):
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    return source, [jpeg(im) for im in square], [jpeg(im) for im in originals], np.stack(square)


def time_round_robin(methods, rounds, warmup):
    """{name: array of seconds}, one call of every method per round."""
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: np.asarray(t) for name, t in times.items()}


def main(argv):
    del argv
    size = FLAGS.image_size
    model = get_model(FLAGS.model, FLAGS.num_classes, input_shape=(size, size, 3), seed=FLAGS.seed)
    count = max(FLAGS.batch, 1)
    source, jpegs, photo_jpegs, pixels = load_images(count, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = export.export_saved_model(model, pathlib.Path(tmp) / "model", image_size=size,
                                         mean=MEAN, std=STD)
        loaded = tf.saved_model.load(str(path))
    by_bytes = loaded.signatures["serving_default"]
    by_pixels = loaded.signatures["serving_images"]

    # The bare model gets exactly what the signature feeds it: resized, normalised floats.
    resized = serving.resize_images(pixels, (size, size))
    floats = ((resized - np.float32(MEAN)) / np.float32(STD)).numpy()
    bare = tf.function(lambda x: model(x, training=False))
    cams = by_pixels(images=tf.constant(pixels[:FLAGS.batch]))["cams"]
    maps = localization_tf.normalize_cams_tf(localization_tf.resize_cams_tf(cams, (size, size)))
    boxes_only = tf.function(lambda m: localization_tf.largest_region_boxes(m, 0.2))
    gray = np.floor(maps.numpy() * 255)
    foreground = gray > np.floor(0.2 * gray.max(axis=(1, 2), keepdims=True))
    iterations = int(localization_tf.connected_component_labels(foreground)[1])

    one = {
        "keras (bare)": lambda: bare(tf.constant(floats[:1])),
        "serving_default": lambda: by_bytes(images_bytes=tf.constant(jpegs[:1])),
        "serving_images": lambda: by_pixels(images=tf.constant(pixels[:1])),
        "box extraction": lambda: boxes_only(maps[:1]),
        "serving_default (photo)": lambda: by_bytes(images_bytes=tf.constant(photo_jpegs[:1])),
    }
    batch = FLAGS.batch
    many = {
        "keras (bare)": lambda: bare(tf.constant(floats[:batch])),
        "serving_default": lambda: by_bytes(images_bytes=tf.constant(jpegs[:batch])),
        "serving_images": lambda: by_pixels(images=tf.constant(pixels[:batch])),
        "box extraction": lambda: boxes_only(maps[:batch]),
        "serving_default (photo)": lambda: by_bytes(images_bytes=tf.constant(photo_jpegs[:batch])),
    }
    single = time_round_robin(one, FLAGS.rounds, FLAGS.warmup)
    batched = time_round_robin(many, FLAGS.batch_rounds, 1)

    print(f"model {FLAGS.model}, {size}x{size} inputs, {FLAGS.num_classes} classes; {source}; "
          f"{os.cpu_count()} CPUs; connected-component iterations on the batch's CAMs: "
          f"{iterations}")
    print(f"'serving_default' gets {size}x{size} JPEGs; "
          "'(photo)' gets the photos at their own size.")
    floor = np.median(single["keras (bare)"])
    header = f"{'b1 p50 ms':>10s} {'b1 p99 ms':>10s} {'p50 ratio':>10s} {f'b{batch} img/s':>11s}"
    print(f"{'method':26s} {header}")
    for name, t in single.items():
        p50, p99 = np.percentile(t, 50) * 1e3, np.percentile(t, 99) * 1e3
        rate = f"{batch / np.median(batched[name]):11.1f}" if name in batched else f"{'-':>11s}"
        print(f"{name:26s} {p50:10.2f} {p99:10.2f} {np.median(t) / floor:10.2f} {rate}")
    ratio = np.median(single["serving_default"]) / floor
    verdict = "meets" if ratio <= 1.20 else "misses"
    print(f"serving_default / bare batch-1 p50 = {ratio:.2f} ({verdict} the <= 1.20 target)")


if __name__ == "__main__":
    app.run(main)
