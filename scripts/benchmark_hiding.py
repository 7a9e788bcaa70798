"""Speed of `keras_has.hide_patches` against its floor and its peers, in one run.

For float32 and uint8 batches (default 64 x 224 x 224 x 3) and the grid settings
16, 32 and mixed (0, 16, 32, 44, 56), prints images/s of:
  hide_patches      the op in a tf.function (seed=None: fresh masks each call)
  hide_patches+XLA  the same inside tf.function(jit_compile=True)
  multiply floor    `images * v` with v a same-shape tf.Variable: one read of the batch,
                    one read of v, one write; the hiding op cannot do much better
  numpy loop        per-image Python/NumPy loop of the authors' algorithm (in place)
  RandomErasing     keras.layers.RandomErasing(training=True), the nearest Keras peer
                    (default arguments; given uint8 it computes and returns float32)
and the ratios hide_patches / floor, / numpy loop and / RandomErasing.

Methods are timed round-robin (one call of each per round) so that a busy machine
slows them alike; the figure is the median over rounds.

Usage:
  python scripts/benchmark_hiding.py --batch=64 --size=224 --repeats=30
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import keras_has  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 64, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("size", 224, "Image height and width.", lower_bound=1)
flags.DEFINE_integer("channels", 3, "Channels per image.", lower_bound=1)
flags.DEFINE_integer("repeats", 30, "Timed rounds per setting (median reported).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed calls of each method before timing.",
                     lower_bound=1)
flags.DEFINE_float("hide_prob", 0.5, "Probability of hiding each cell.")
flags.DEFINE_list("dtypes", ["float32", "uint8"], "Image dtypes to measure.")
flags.DEFINE_integer("seed", 0, "Seed of the input images and of the NumPy loop.")

GRIDS = (("16", (16,)), ("32", (32,)), ("mixed", (0, 16, 32, 44, 56)))


def numpy_hide_loop(batch, grid_sizes, hide_prob, fill, rng):
    """The authors' algorithm, one image and one cell at a time, in place.

    For each image: draw S uniformly from grid_sizes; if S > 0, walk the S x S cells
    from the top-left corner (truncated at the edges) and set a cell to `fill` when a
    uniform draw falls below hide_prob.
    """
    _, height, width, _ = batch.shape
    for image in batch:
        size = grid_sizes[rng.integers(len(grid_sizes))]
        if size == 0:
            continue
        for y in range(0, height, size):
            for x in range(0, width, size):
                if rng.random() < hide_prob:
                    image[y:y + size, x:x + size, :] = fill
    return batch


def make_methods(images, grid_sizes, hide_prob):
    """Returns {name: zero-argument callable} for one dtype and grid setting."""

    @tf.function
    def hide(x):
        return keras_has.hide_patches(x, grid_sizes=grid_sizes, hide_prob=hide_prob)

    @tf.function(jit_compile=True)
    def hide_xla(x):
        return keras_has.hide_patches(x, grid_sizes=grid_sizes, hide_prob=hide_prob)

    weights = tf.Variable(tf.ones_like(images))

    @tf.function
    def multiply(x):
        return x * weights

    erasing = keras.layers.RandomErasing()  # uint8 in, float32 out (it casts)

    @tf.function
    def erase(x):
        return erasing(x, training=True)

    host = images.numpy()
    rng = np.random.default_rng(FLAGS.seed)
    return {
        "hide_patches": lambda: hide(images),
        "hide_patches+XLA": lambda: hide_xla(images),
        "multiply floor": lambda: multiply(images),
        "numpy loop": lambda: numpy_hide_loop(host, grid_sizes, hide_prob, 0, rng),
        "RandomErasing": lambda: erase(images),
    }


def time_round_robin(methods, repeats, warmup):
    """Median seconds per call of each method, timed one call of each per round."""
    available = {}
    for name, fn in methods.items():
        try:
            for _ in range(warmup):
                fn()
            available[name] = fn
        except Exception as err:  # a peer that does not support this dtype
            print(f"  ({name} unavailable: {type(err).__name__}: {str(err)[:120]})")
    times = {name: [] for name in available}
    for _ in range(repeats):
        for name, fn in available.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv):
    del argv
    shape = (FLAGS.batch, FLAGS.size, FLAGS.size, FLAGS.channels)
    print(f"batch {shape}, hide_prob {FLAGS.hide_prob}, median of {FLAGS.repeats} rounds, "
          f"TF {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs; images/s (higher is better)")
    header = (f"{'dtype':<8}{'grid':<7}{'hide_patches':>13}{'+XLA':>9}{'floor':>9}"
              f"{'numpy':>9}{'erasing':>9}{'hp/floor':>10}{'hp/numpy':>10}{'hp/erase':>10}")
    rows = []
    for dtype_name in FLAGS.dtypes:
        dtype = tf.as_dtype(dtype_name)
        pixels = tf.random.stateless_uniform(shape, seed=[FLAGS.seed, 1], maxval=255.0)
        images = tf.cast(pixels if dtype.is_floating else tf.round(pixels), dtype)
        for grid_name, grid_sizes in GRIDS:
            methods = make_methods(images, grid_sizes, FLAGS.hide_prob)
            med = time_round_robin(methods, FLAGS.repeats, FLAGS.warmup)
            ips = {k: FLAGS.batch / v for k, v in med.items()}

            def fmt(name):
                return f"{ips[name]:>9.0f}" if name in ips else f"{'n/a':>9}"

            def ratio(name):
                hp = ips["hide_patches"]
                return f"{hp / ips[name]:>10.2f}" if name in ips else f"{'n/a':>10}"

            rows.append(
                f"{dtype_name:<8}{grid_name:<7}{ips['hide_patches']:>13.0f}"
                f"{fmt('hide_patches+XLA')}{fmt('multiply floor')}{fmt('numpy loop')}"
                f"{fmt('RandomErasing')}{ratio('multiply floor')}{ratio('numpy loop')}"
                f"{ratio('RandomErasing')}"
            )
            print(rows[-1], flush=True)
    print()
    print(header)
    for row in rows:
        print(row)
    print("targets: hp/floor >= 0.5 at every grid size; hp/numpy >= 5 at grid 16")


if __name__ == "__main__":
    app.run(main)
