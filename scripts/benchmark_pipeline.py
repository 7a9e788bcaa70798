"""Training-pipeline throughput with and without hiding, against the training step.

For each available dataset (the built-in synthetic one; a WSOL folder of real JPEGs,
../shared/data/pets3 by default) prints images/s of `make_train_dataset` without hiding
and with hiding (same run, alternating chunks with one live iterator, median over rounds) and the ratio; then
images/s of one `alexnet_gap` training step under mixed_bfloat16 at the same image size
and batch, and pipeline / step ratios (> 1 means input never bounds training).

Usage:
  python scripts/benchmark_pipeline.py --image_size=224 --batch=32 --batches=8 --rounds=3
"""
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_has import data as khdata  # noqa: E402

_DEFAULT_PETS3 = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pets3"

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 224, "Training crop size S.", lower_bound=8)
flags.DEFINE_integer("batch", 32, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("batches", 8, "Timed batches per chunk.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Round-robin rounds (median reported).", lower_bound=1)
flags.DEFINE_list("grid_sizes", ["16", "32", "44", "56"], "Hiding grid sizes.")
flags.DEFINE_float("hide_prob", 0.5, "Hiding probability.")
flags.DEFINE_string("pets3", str(_DEFAULT_PETS3), "WSOL folder of real JPEGs ('' to skip).")
flags.DEFINE_string("synthetic_data_dir", None, "TFDS data_dir for the synthetic dataset "
                    "(default: a temporary folder).")
flags.DEFINE_string("model", "alexnet_gap", "Model whose training step is compared ('' to skip).")
flags.DEFINE_integer("model_steps", 3, "Timed training steps.", lower_bound=1)


def _time_chunk(iterator, batches):
    start = time.perf_counter()
    for _ in range(batches):
        x, _ = next(iterator)
        x.numpy()
    return batches * FLAGS.batch / (time.perf_counter() - start)


def bench_source(name, source):
    hiding = {"grid_sizes": tuple(int(g) for g in FLAGS.grid_sizes), "hide_prob": FLAGS.hide_prob}
    stats = dict(mean=khdata.IMAGENET_MEAN, std=khdata.IMAGENET_STD)
    datasets = {
        label: khdata.make_train_dataset(source, FLAGS.image_size, FLAGS.batch, hiding=h, seed=0,
                                         drop_remainder=True, **stats).repeat()
        for label, h in (("no hiding", None), ("hiding", hiding))}
    rates = {label: [] for label in datasets}
    for _ in range(FLAGS.rounds):
        for label, ds in datasets.items():
            # One live iterator at a time: a paused pipeline would keep filling its
            # prefetch buffer in the background and steal the other's CPU.
            iterator = iter(ds)
            _time_chunk(iterator, 2)  # warm up: autotune, first file reads
            rates[label].append(_time_chunk(iterator, FLAGS.batches))
            del iterator
    medians = {label: float(np.median(r)) for label, r in rates.items()}
    print(f"{name}: pipeline images/s at S={FLAGS.image_size}, batch {FLAGS.batch}: "
          f"no hiding {medians['no hiding']:.1f}, hiding {medians['hiding']:.1f}, "
          f"hiding/no hiding = {medians['hiding'] / medians['no hiding']:.3f} "
          f"(cost {100 * (1 - medians['hiding'] / medians['no hiding']):.1f}%; target <= 10%)")
    return medians


def bench_model():
    try:
        import keras

        from keras_has import models
    except ImportError as e:
        print(f"model comparison skipped: {e}")
        return None
    if FLAGS.model not in models.list_models():
        print(f"model comparison skipped: {FLAGS.model!r} not in {models.list_models()}")
        return None
    num_classes = 10
    try:
        model = models.get_model(FLAGS.model, num_classes,
                                 input_shape=(FLAGS.image_size, FLAGS.image_size, 3),
                                 dtype_policy="mixed_bfloat16")
    except (TypeError, ValueError) as e:
        print(f"model comparison skipped: get_model({FLAGS.model!r}, dtype_policy='mixed_bfloat16') "
              f"failed: {e}")
        return None
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((FLAGS.batch, FLAGS.image_size, FLAGS.image_size, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, FLAGS.batch).astype(np.int32)
    model.train_on_batch(x, y)  # trace
    times = []
    for _ in range(FLAGS.model_steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    rate = FLAGS.batch / float(np.median(times))
    print(f"{FLAGS.model} mixed_bfloat16 training step: {rate:.1f} images/s "
          f"(median of {FLAGS.model_steps} steps, batch {FLAGS.batch}, S={FLAGS.image_size})")
    return rate


def main(argv):
    del argv
    print(f"TF {tf.__version__}, {os.cpu_count()} CPU(s); figures are medians of {FLAGS.rounds} rounds")
    results = {}
    try:
        data_dir = FLAGS.synthetic_data_dir or tempfile.mkdtemp(prefix="keras_has_synthetic_")
        source = khdata.get_source("synthetic", data_dir=data_dir)
        results["synthetic"] = bench_source("synthetic", source)
    except Exception as e:  # noqa: BLE001  (an absent/unfinished builder is reported, not fatal)
        print(f"synthetic: skipped ({type(e).__name__}: {str(e)[:200]})")
    if FLAGS.pets3:
        if os.path.isdir(os.path.join(FLAGS.pets3, "metadata")):
            results["pets3"] = bench_source("pets3 (real JPEGs)", khdata.get_source(FLAGS.pets3))
        else:
            print(f"pets3: skipped (no WSOL folder at {FLAGS.pets3})")
    if FLAGS.model:
        step = bench_model()
        if step:
            for name, medians in results.items():
                print(f"{name}: pipeline (with hiding) / {FLAGS.model} step = "
                      f"{medians['hiding'] / step:.2f}x (> 1: input does not bound training)")


if __name__ == "__main__":
    app.run(main)
