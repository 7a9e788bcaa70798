"""Training and inference speed of the GAP models: float32 vs mixed_bfloat16 (vs XLA),
and side by side with the same architectures in PyTorch.

For each model and each Keras setting (float32, mixed_bfloat16; with --jit also both
under jit_compile=True; with --unfused also both with keras.layers.BatchNormalization
instead of the fused batch norm the backbones use by default; with --plain_conv also both
with Keras' own Conv2D, Add and ReLU instead of PointwiseMatmulConv2D and AddReLU),
prints images/s of
  train   one optimizer step (SGD momentum, sparse softmax cross-entropy) on an
          in-memory batch (a tf.Tensor made once) via `model.train_on_batch` (no input
          pipeline)
  infer   `model.predict_on_batch` (inference mode)
and the ratio of each to the first setting of the same model. For models with batch
norms after convolutions, each policy is also timed for inference with those batch norms
folded into the convolutions (`keras_has.models.fold_batch_norms`, what the export
serves; setting "folded-bn"; --nofold leaves it out).

With --torch, the same architecture written in plain torch.nn (scripts/torch_models.py;
parameter counts asserted equal to the Keras model's) is timed in the same rounds:
float32 and bfloat16 autocast, both channels_last (SGD momentum, cross-entropy; inference
under torch.inference_mode), and with --torch_compile also torch.compile'd inference.
A summary line per model gives the best Keras and the best PyTorch setting for train and
for inference and their ratio (Keras / PyTorch; above 1 means Keras is faster). Needs
PyTorch: `pip install -e .[bench]`.

With --grouped_conv it first times forward+backward of AlexNet's conv4 (batch 32,
13x13x384 -> 384, 3x3, groups 2) as keras.layers.Conv2D(groups=2) (which Keras runs
through a per-op XLA kernel on CPU), as GroupedConv2D's fallback (one conv per group,
concatenated) and as keras_has' GroupedConv2D (one grouped tf.nn.conv2d on oneDNN), same
weights, per policy.

All settings of one model are timed round-robin (one step of each per round), so a busy
machine slows them alike; the figure is the median over rounds.

Usage:
  python scripts/benchmark_models.py --batch=32 --size=224 --repeats=3 --jit
  python scripts/benchmark_models.py --torch --models=all                  # the protocol
  python scripts/benchmark_models.py --torch --models=all --quick          # a few minutes
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from keras_has import models  # noqa: E402
from keras_has.models.caffe_layers import GroupedConv2D, native_grouped_conv_supported  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import cpu_line  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["alexnet_gap", "googlenet_gap", "tiny_gap"], "Registered model names, or 'all' (the six backbones).")
flags.DEFINE_list("policies", ["float32", "mixed_bfloat16"], "Keras dtype policies to compare.")
flags.DEFINE_boolean("jit", False, "Also time every policy with jit_compile=True (XLA).")
flags.DEFINE_integer("batch", 32, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("size", 224, "Image height and width.", lower_bound=32)
flags.DEFINE_integer("num_classes", 200, "Classifier outputs.", lower_bound=2)
flags.DEFINE_integer("repeats", 3, "Timed rounds (median reported).", lower_bound=1)
flags.DEFINE_integer("warmup", 1, "Untimed steps of each setting before timing (after tracing).", lower_bound=0)
flags.DEFINE_boolean("batch_norm", False, "Pass batch_norm=True to alexnet_gap / googlenet_gap.")
flags.DEFINE_boolean("grouped_conv", False, "Also compare Conv2D(groups=2) with GroupedConv2D.")
flags.DEFINE_boolean("torch", False, "Also time the PyTorch versions of the models (needs PyTorch).")
flags.DEFINE_boolean("torch_compile", False, "With --torch, also time torch.compile'd inference.")
flags.DEFINE_boolean("fold", True, "Also time inference with the batch norms folded into the convolutions (models.fold_batch_norms).")
flags.DEFINE_boolean("unfused", False, "Also time the BatchNorm backbones with keras.layers.BatchNormalization.")
flags.DEFINE_boolean(
    "plain_conv", False,
    "Also time the application backbones with Keras' own Conv2D, Add and ReLU (pointwise_matmul=False, "
    "fused_add_relu=False) instead of PointwiseMatmulConv2D (1x1 kernels with matrix-product gradients) "
    "and AddReLU (residual sum and ReLU in one kernel in training).",
)
flags.DEFINE_boolean("profile", False, "Instead of timing, print the op types that take the time in one "
                     "Keras train step per setting (TensorFlow profiler, summed over executor threads).")
flags.DEFINE_integer("profile_top", 10, "With --profile, how many op types to list.", lower_bound=1)
flags.DEFINE_boolean("quick", False, "Batch 8, 128x128, 3 rounds, 1 warm-up step: a fast look, not the protocol.")


class SplitGroupedConv2D(GroupedConv2D):
    """GroupedConv2D forced onto its fallback: one convolution per group, concatenated."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel) if self.groups == 1 else self._split_convolution(inputs, kernel)


def benchmark_grouped_conv(policy, batch, repeats):
    """Median seconds of one forward+backward of AlexNet's conv4 as Conv2D(groups=2),
    GroupedConv2D's split fallback and GroupedConv2D (one grouped tf.nn.conv2d where
    supported), timed round-robin."""
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, 13, 13, 384)).astype("float32"))
    steps = []
    for cls in (keras.layers.Conv2D, SplitGroupedConv2D, GroupedConv2D):
        layer = cls(384, 3, padding="same", groups=2, dtype=policy)
        layer.build(x.shape)

        @tf.function
        def step(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(tf.cast(layer(x), tf.float32))
            return tape.gradient(y, [x] + layer.trainable_variables)

        step(x)
        steps.append(step)
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, t in zip(steps, times):
            t.append(_time(lambda step=step: step(x)))
    return tuple(float(np.median(t)) for t in times)


def _build(name, policy, jit, fused, pointwise, batch, size, num_classes, batch_norm):
    kwargs = {"dtype_policy": policy, "seed": 0}
    if batch_norm and name in ("alexnet_gap", "googlenet_gap"):
        kwargs["batch_norm"] = True
    if not fused and name in _FUSABLE:
        kwargs["fused_batch_norm"] = False
    if not pointwise and name in _APPLICATIONS:
        kwargs["pointwise_matmul"] = False
        kwargs["fused_add_relu"] = False
    model = models.get_model(name, num_classes, input_shape=(size, size, 3), **kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


# Models whose batch norms can be switched between the fused layer and Keras' own.
_FUSABLE = ("resnet50_gap", "mobilenetv2_gap", "inceptionv3_gap")
# Models whose Conv2D / Add layers can be switched to Keras' own (--plain_conv).
_APPLICATIONS = _FUSABLE + ("vgg16_gap",)


def _variant_settings(name, keras_settings):
    """The --unfused / --plain_conv settings of ``name`` beside the default ones."""
    extra = []
    if FLAGS.unfused and name in _FUSABLE:
        extra += [(p, j, False, True) for p, j, _, _ in keras_settings]
    if FLAGS.plain_conv and name in _APPLICATIONS:
        extra += [(p, j, True, False) for p, j, _, _ in keras_settings]
    return extra


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def keras_setting_name(setting):
    policy, jit, fused, pointwise = setting
    return f"{policy}{' xla' if jit else ''}{'' if fused else ' unfused-bn'}{'' if pointwise else ' plain-conv'}"


def keras_steps(name, setting, x, y, num_classes, batch_norm):
    """(train step, inference step) callables of the Keras model for ``setting``."""
    policy, jit, fused, pointwise = setting
    model = _build(name, policy, jit, fused, pointwise, x.shape[0], x.shape[1], num_classes, batch_norm)
    return (lambda: model.train_on_batch(x, y)), (lambda: model.predict_on_batch(x)), model


def benchmark_model(name, keras_settings, torch_settings, batch, size, num_classes, repeats, warmup, batch_norm):
    """Returns {setting label: (train images/s, infer images/s)} for one model, all
    settings timed round-robin. Torch settings' train or infer may be None (not timed)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=batch).astype("int32")
    # Both frameworks get the batch as their own in-memory tensor, made once (as PyTorch's
    # worker does; a numpy batch would be copied into a new tensor at every Keras call).
    x_tensor, y_tensor = tf.constant(x), tf.constant(y)
    steps = {}
    keras_model = None
    for setting in keras_settings:
        train, infer, keras_model = keras_steps(name, setting, x_tensor, y_tensor, num_classes, batch_norm)
        steps["keras " + keras_setting_name(setting)] = (train, infer)
        if FLAGS.fold and setting[2] and setting[3]:
            folded = models.fold_batch_norms(keras_model)
            if folded is not keras_model:
                steps["keras " + keras_setting_name(setting) + " folded-bn"] = (
                    None, lambda folded=folded: folded.predict_on_batch(x_tensor))
    worker = None
    if torch_settings:
        import torch_bench  # noqa: PLC0415  (only with --torch)

        worker = torch_bench.Worker(name, torch_settings, x, y, num_classes)
        print(f"{name}: {worker.info}", flush=True)
        keras_counts = (
            sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights),
            sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights),
        )
        if tuple(worker.counts) != keras_counts:
            worker.close()
            raise AssertionError(
                f"{name}: the PyTorch model has (trainable, moving statistics) = {tuple(worker.counts)}, "
                f"the Keras model {keras_counts}: the architectures differ"
            )
        for setting in torch_settings:
            steps["torch " + setting] = worker.steps(setting)
    for fns in steps.values():
        for _ in range(1 + warmup):  # first call traces / compiles
            for fn in fns:
                if fn is not None:
                    fn()
    times = {label: ([], []) for label in steps}
    for _ in range(repeats):
        for label, fns in steps.items():
            for i, fn in enumerate(fns):
                if fn is not None:
                    times[label][i].append(_time(fn))
    if worker is not None:
        worker.close()
    return {
        label: tuple(batch / float(np.median(t)) if t else None for t in times[label]) for label in steps
    }


def profile_train_step(name, setting, batch, size, num_classes, batch_norm, top):
    """Op types of one Keras train step under ``setting``, by total time: (rows of
    (op type, ms, share of op time), total op ms). TensorFlow profiler trace, op events of
    the executor threads (``tf_Compute``); oneDNN's work inside an op counts for that op."""
    import collections  # noqa: PLC0415
    import glob  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=batch).astype("int32")
    train, _, _ = keras_steps(name, setting, x, y, num_classes, batch_norm)
    train()
    train()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        train()
        tf.profiler.experimental.stop()
        (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op = plane.event_metadata[event.metadata_id].name
                if ":" in op and "::" not in op:  # "layer/.../name:OpType", not executor events
                    totals[op.rsplit(":", 1)[1]] += event.duration_ps / 1e9
    total = sum(totals.values())
    return [(op, ms, ms / total) for op, ms in totals.most_common(top)], total


def _fmt(value, width=12):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def _ratio(value, base):
    return f"{'-':>6}" if value is None or not base else f"{value / base:>6.2f}"


def _best(result, prefix, index):
    candidates = [(v[index], label) for label, v in result.items() if label.startswith(prefix) and v[index]]
    return max(candidates) if candidates else (None, None)


def main(argv):
    del argv
    names = list(_ALL_MODELS) if FLAGS.models == ["all"] else FLAGS.models
    unknown = [m for m in names if m not in models.list_models()]
    if unknown:
        raise app.UsageError(f"--models: unknown {unknown}; valid: {models.list_models()} or 'all'")
    if FLAGS.quick:
        FLAGS.batch, FLAGS.size, FLAGS.repeats, FLAGS.warmup = 8, 128, 3, 1
    torch_settings = []
    if FLAGS.torch:
        import importlib.util  # noqa: PLC0415

        import torch_bench  # noqa: PLC0415

        if importlib.util.find_spec("torch") is None:
            raise app.UsageError("--torch needs PyTorch: pip install -e .[bench]")
        missing = [m for m in names if m not in torch_bench.MODEL_NAMES]
        if missing:
            raise app.UsageError(f"--torch: no PyTorch version of {missing}; have {torch_bench.MODEL_NAMES}")
        torch_settings = ["float32", "bfloat16"] + (["compile float32", "compile bfloat16"] if FLAGS.torch_compile else [])
    if FLAGS.grouped_conv:
        print(f"AlexNet conv4 forward+backward, batch {FLAGS.batch}: Conv2D(groups=2) vs GroupedConv2D's split "
              f"fallback vs GroupedConv2D (native grouped kernel: {native_grouped_conv_supported()})")
        for policy in FLAGS.policies:
            keras_s, split_s, ours_s = benchmark_grouped_conv(policy, FLAGS.batch, max(3, FLAGS.repeats))
            print(f"  {policy:<16} Conv2D {keras_s * 1e3:8.1f} ms  split {split_s * 1e3:8.1f} ms  "
                  f"GroupedConv2D {ours_s * 1e3:8.1f} ms  vs Conv2D x{keras_s / ours_s:.1f}  "
                  f"vs split x{split_s / ours_s:.2f}", flush=True)
    keras_settings = [(p, False, True, True) for p in FLAGS.policies]
    if FLAGS.jit:
        keras_settings += [(p, True, True, True) for p in FLAGS.policies]
    print(cpu_line())
    print(
        f"tensorflow {tf.__version__}, keras {keras.__version__}; batch {FLAGS.batch}, {FLAGS.size}x{FLAGS.size}, "
        f"{FLAGS.num_classes} classes, median of {FLAGS.repeats} rounds, batch_norm={FLAGS.batch_norm}"
    )
    if FLAGS.profile:
        for name in names:
            settings = list(keras_settings)
            settings += _variant_settings(name, keras_settings)
            for setting in settings:
                rows, total = profile_train_step(
                    name, setting, FLAGS.batch, FLAGS.size, FLAGS.num_classes, FLAGS.batch_norm, FLAGS.profile_top
                )
                print(f"\n{name} {keras_setting_name(setting)}: one train step, {total:.0f} ms of op time")
                for op, ms, share in rows:
                    print(f"  {op:<36} {ms:9.1f} ms {100 * share:5.1f}%")
            keras.backend.clear_session()
        return
    header = f"{'model':<16} {'setting':<34} {'train img/s':>12} {'x':>6} {'infer img/s':>12} {'x':>6}"
    print(header)
    print("-" * len(header))
    summary = []
    for name in names:
        settings = list(keras_settings)
        settings += _variant_settings(name, keras_settings)
        result = benchmark_model(
            name, settings, torch_settings, FLAGS.batch, FLAGS.size, FLAGS.num_classes, FLAGS.repeats,
            FLAGS.warmup, FLAGS.batch_norm,
        )
        base_train, base_infer = next(iter(result.values()))
        for label, (train, infer) in result.items():
            print(
                f"{name:<16} {label:<34} {_fmt(train)} {_ratio(train, base_train)} "
                f"{_fmt(infer)} {_ratio(infer, base_infer)}",
                flush=True,
            )
        if torch_settings:
            row = [name]
            for index in (0, 1):
                k, k_label = _best(
                    {lb: v for lb, v in result.items() if "unfused" not in lb and "plain-conv" not in lb}, "keras", index
                )
                t, t_label = _best(result, "torch", index)
                row.append((k, k_label, t, t_label))
            summary.append(row)
        keras.backend.clear_session()
    if summary:
        print("\nbest Keras vs best PyTorch (ratio = Keras / PyTorch img/s)")
        print(f"{'model':<16} {'keras train':>22} {'torch train':>22} {'ratio':>6} {'keras infer':>22} "
              f"{'torch infer':>22} {'ratio':>6}")
        for name, *cols in summary:
            cells = []
            for k, k_label, t, t_label in cols:
                cells += [f"{k:7.1f} ({k_label.split(' ', 1)[1]})", f"{t:7.1f} ({t_label.split(' ', 1)[1]})",
                          f"{k / t:6.2f}"]
            print(f"{name:<16} {cells[0]:>22} {cells[1]:>22} {cells[2]:>6} {cells[3]:>22} {cells[4]:>22} {cells[5]:>6}")


_ALL_MODELS = ("alexnet_gap", "googlenet_gap", "vgg16_gap", "resnet50_gap", "mobilenetv2_gap", "inceptionv3_gap")


if __name__ == "__main__":
    app.run(main)
