"""Training and inference speed of the GAP models: float32 vs mixed_bfloat16 (vs XLA).

For each model (default alexnet_gap, googlenet_gap, tiny_gap) and each setting
(float32, mixed_bfloat16, and with --jit also both under jit_compile=True), prints
images/s of
  train   one optimizer step (SGD momentum, sparse softmax cross-entropy) on an
          in-memory batch via `model.train_on_batch` (no input pipeline)
  infer   `model.predict_on_batch` (inference mode)
and the ratio of each to the float32, no-XLA setting of the same model.

With --grouped_conv it first times forward+backward of AlexNet's conv4 (batch 32,
13x13x384 -> 384, 3x3, groups 2) as keras.layers.Conv2D(groups=2) (which Keras runs
through a per-op XLA kernel on CPU) against keras_has' GroupedConv2D (one conv per group,
same weights), per policy.

Settings are timed round-robin (one step of each per round) so a busy machine slows
them alike; the figure is the median over rounds.

Usage:
  python scripts/benchmark_models.py --batch=32 --size=224 --repeats=3 --jit
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_has import models  # noqa: E402
from keras_has.models.caffe_layers import GroupedConv2D  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["alexnet_gap", "googlenet_gap", "tiny_gap"], "Registered model names.")
flags.DEFINE_list("policies", ["float32", "mixed_bfloat16"], "Keras dtype policies to compare.")
flags.DEFINE_boolean("jit", False, "Also time every policy with jit_compile=True (XLA).")
flags.DEFINE_integer("batch", 32, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("size", 224, "Image height and width.", lower_bound=32)
flags.DEFINE_integer("num_classes", 200, "Classifier outputs.", lower_bound=2)
flags.DEFINE_integer("repeats", 3, "Timed rounds (median reported).", lower_bound=1)
flags.DEFINE_integer("warmup", 1, "Untimed steps of each setting before timing (after tracing).", lower_bound=0)
flags.DEFINE_boolean("batch_norm", False, "Pass batch_norm=True to alexnet_gap / googlenet_gap.")
flags.DEFINE_boolean("grouped_conv", False, "Also compare Conv2D(groups=2) with GroupedConv2D.")


def benchmark_grouped_conv(policy, batch, repeats):
    """Median seconds of one forward+backward of (Conv2D(groups=2), GroupedConv2D)."""
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, 13, 13, 384)).astype("float32"))
    results = []
    for cls in (keras.layers.Conv2D, GroupedConv2D):
        layer = cls(384, 3, padding="same", groups=2, dtype=policy)
        layer.build(x.shape)

        @tf.function
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(tf.cast(layer(x), tf.float32))
            return tape.gradient(y, [x] + layer.trainable_variables)

        step(x)
        results.append(float(np.median([_time(lambda: step(x)) for _ in range(repeats)])))
    return tuple(results)


def _build(name, policy, jit, batch, size, num_classes, batch_norm):
    kwargs = {"dtype_policy": policy, "seed": 0}
    if batch_norm and name in ("alexnet_gap", "googlenet_gap"):
        kwargs["batch_norm"] = True
    model = models.get_model(name, num_classes, input_shape=(size, size, 3), **kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=batch).astype("int32")
    return model, x, y


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark_model(name, settings, batch, size, num_classes, repeats, warmup, batch_norm):
    """Returns {setting: (train images/s, infer images/s)} for one model."""
    built = {s: _build(name, s[0], s[1], batch, size, num_classes, batch_norm) for s in settings}
    steps = {}
    for s, (model, x, y) in built.items():
        steps[s] = (
            lambda m=model, x=x, y=y: m.train_on_batch(x, y),
            lambda m=model, x=x: m.predict_on_batch(x),
        )
        for _ in range(1 + warmup):  # first call traces / compiles
            steps[s][0]()
            steps[s][1]()
    times = {s: ([], []) for s in settings}
    for _ in range(repeats):
        for s in settings:
            for i in (0, 1):
                times[s][i].append(_time(steps[s][i]))
    return {s: tuple(batch / float(np.median(t)) for t in times[s]) for s in settings}


def main(argv):
    del argv
    unknown = [m for m in FLAGS.models if m not in models.list_models()]
    if unknown:
        raise app.UsageError(f"--models: unknown {unknown}; valid: {models.list_models()}")
    if FLAGS.grouped_conv:
        print(f"AlexNet conv4 forward+backward, batch {FLAGS.batch}: Conv2D(groups=2) vs GroupedConv2D")
        for policy in FLAGS.policies:
            keras_s, ours_s = benchmark_grouped_conv(policy, FLAGS.batch, max(3, FLAGS.repeats))
            print(f"  {policy:<16} Conv2D {keras_s * 1e3:8.1f} ms  GroupedConv2D {ours_s * 1e3:8.1f} ms  "
                  f"speed-up x{keras_s / ours_s:.1f}", flush=True)
    settings = [(p, False) for p in FLAGS.policies]
    if FLAGS.jit:
        settings += [(p, True) for p in FLAGS.policies]
    print(
        f"batch {FLAGS.batch}, {FLAGS.size}x{FLAGS.size}, {FLAGS.num_classes} classes, "
        f"median of {FLAGS.repeats} rounds, batch_norm={FLAGS.batch_norm}"
    )
    header = f"{'model':<15} {'policy':<16} {'xla':<5} {'train img/s':>12} {'x':>6} {'infer img/s':>12} {'x':>6}"
    print(header)
    print("-" * len(header))
    for name in FLAGS.models:
        result = benchmark_model(
            name, settings, FLAGS.batch, FLAGS.size, FLAGS.num_classes, FLAGS.repeats, FLAGS.warmup, FLAGS.batch_norm
        )
        base_train, base_infer = result[settings[0]]
        for (policy, jit), (train, infer) in result.items():
            print(
                f"{name:<15} {policy:<16} {str(jit):<5} {train:>12.1f} {train / base_train:>6.2f} "
                f"{infer:>12.1f} {infer / base_infer:>6.2f}",
                flush=True,
            )
        keras.backend.clear_session()


if __name__ == "__main__":
    app.run(main)
