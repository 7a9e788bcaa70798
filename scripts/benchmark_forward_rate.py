"""How close a model's evaluation forward pass comes to what this CPU does in bfloat16.

The evaluation pass of ``keras-has evaluate`` is, for a large backbone, its forward pass
(CAMs and logits of a batch, the model with its batch norms folded, as
``load_for_evaluation`` gives it). This script answers "could that pass be faster on this
machine?" by measuring, in one process:

* the forward pass as the evaluation runs it (``compute_cams_and_logits`` on a batch,
  ``mixed_bfloat16`` by default, batch norms folded), timed over ``--repeats`` calls after
  a warm-up;
* what oneDNN reports for each primitive of the last call (``ONEDNN_VERBOSE=1``, the
  process runs itself as a child to read oneDNN's lines): per convolution its shape,
  kernel, time and GFLOP/s (2 * N * OH * OW * KH * KW * IC * OC / groups), and the
  share of the call spent in convolutions;
* the reference: a square matrix product of ``--gemm_size`` in the same precision
  (``tf.matmul``, oneDNN), the best of 5 — what a large dense product reaches here.

Prints the slowest convolutions, the convolutions' total GFLOP per image and overall
GFLOP/s, the call's GFLOP/s and the reference GEMM's, and as the last line
``forward X.X ms/img, convolutions Y GFLOP/s = Z.ZZ of a bfloat16 GEMM (W GFLOP/s)``.
A ratio near 1 means the pass is compute-bound at what the cores do: only less
arithmetic (or other hardware) makes it faster.

Usage:
  python scripts/benchmark_forward_rate.py                             # resnet50_gap
  python scripts/benchmark_forward_rate.py --models=mobilenetv2_gap,resnet50_gap
"""
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import cpu_line  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["resnet50_gap"], "Registered model names.")
flags.DEFINE_integer("batch", 32, "Images per batch.", lower_bound=1)
flags.DEFINE_integer("size", 224, "Image height and width.", lower_bound=32)
flags.DEFINE_integer("num_classes", 3, "Classifier outputs.", lower_bound=2)
flags.DEFINE_enum("policy", "mixed_bfloat16", ["mixed_bfloat16", "float32"], "Keras dtype policy.")
flags.DEFINE_integer("repeats", 4, "Timed calls after the warm-up (median reported).", lower_bound=1)
flags.DEFINE_integer("gemm_size", 4096, "Side of the reference square matrix product.", lower_bound=64)
flags.DEFINE_integer("top", 8, "How many of the slowest convolutions to list.", lower_bound=0)
flags.DEFINE_boolean("child", False, "Internal: run the measurements (under ONEDNN_VERBOSE=1).")

MARK = "forward_rate_mark"


def _mark(label, seconds=None):
    """A line through the C library's stdout, where oneDNN prints: the two stay in order."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.fflush(None)
    line = f"{MARK},{label},{'' if seconds is None else f'{seconds:.6f}'}\n".encode()
    libc.fputs(line, ctypes.c_void_p.in_dll(libc, "stdout"))
    libc.fflush(None)


def child(_):
    """Runs the timed calls, marking on stdout where each one's oneDNN lines start."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_has import models
    from keras_has.localize.cams import compute_cams_and_logits

    keras.mixed_precision.set_global_policy(FLAGS.policy)
    dtype = tf.bfloat16 if FLAGS.policy == "mixed_bfloat16" else tf.float32
    a = tf.cast(tf.random.stateless_normal((FLAGS.gemm_size,) * 2, seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((FLAGS.gemm_size,) * 2, seed=(3, 4)), dtype)
    gemm = tf.function(tf.autograph.experimental.do_not_convert(tf.linalg.matmul))
    gemm(a, b).numpy()
    for _ in range(5):
        _mark("gemm")
        start = time.perf_counter()
        gemm(a, b).numpy()
        _mark("gemm_end", time.perf_counter() - start)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.standard_normal((FLAGS.batch, FLAGS.size, FLAGS.size, 3), np.float32))
    labels = tf.constant(rng.integers(0, FLAGS.num_classes, FLAGS.batch).astype(np.int32))
    for name in FLAGS.models:
        model = models.fold_batch_norms(
            models.get_model(name, FLAGS.num_classes, input_shape=(FLAGS.size, FLAGS.size, 3)))
        for _ in range(2):  # trace, then warm oneDNN's primitive cache
            compute_cams_and_logits(model, images, labels)[0].numpy()
        for _ in range(FLAGS.repeats):
            _mark(f"forward:{name}")
            start = time.perf_counter()
            compute_cams_and_logits(model, images, labels)[0].numpy()
            _mark("forward_end", time.perf_counter() - start)


_SHAPE = re.compile(r"(?:g(?P<g>\d+))?mb(?P<mb>\d+)_ic(?P<ic>\d+)oc(?P<oc>\d+)_.*?oh(?P<oh>\d+)"
                    r"kh(?P<kh>\d+).*?ow(?P<ow>\d+)kw(?P<kw>\d+)")


def conv_flops(shape):
    """FLOPs of one oneDNN convolution from its verbose shape string
    (``g2mb32_ic64oc64_ih56oh56kh3...``: 2 * N * OH * OW * KH * KW * IC * OC / groups)."""
    m = _SHAPE.search(shape)
    if m is None:
        raise ValueError(f"not a oneDNN convolution shape: {shape!r}")
    v = {k: int(x) for k, x in m.groupdict(default="1").items()}
    return 2 * v["mb"] * v["oh"] * v["ow"] * v["kh"] * v["kw"] * v["ic"] * v["oc"] // v["g"]


def parse(lines):
    """``{label: [(seconds, [(kind, impl, shape, ms), ...]), ...]}`` from the child's stdout."""
    calls, current, prims = {}, None, None  # prims: None outside a timed call
    for line in lines:
        fields = line.rstrip("\n").split(",")
        if fields[0] == MARK:
            if fields[1].endswith("_end"):
                calls.setdefault(current, []).append((float(fields[2]), prims))
                prims = None
            else:
                current, prims = fields[1], []
        elif fields[0] == "onednn_verbose" and len(fields) > 6 and fields[3] == "exec" and prims is not None:
            prims.append((fields[5], fields[6], fields[-2], float(fields[-1])))
    return calls


def report(calls, batch):
    gemm_s = min(s for s, _ in calls["gemm"])
    gemm_rate = 2 * FLAGS.gemm_size ** 3 / gemm_s / 1e9
    print(f"reference: {FLAGS.gemm_size}^3 matrix product in {FLAGS.policy} {gemm_rate:.0f} GFLOP/s "
          f"(best of {len(calls['gemm'])}: {1e3 * gemm_s:.1f} ms)")
    last = None
    for label, runs in calls.items():
        if not label.startswith("forward:"):
            continue
        name = label.split(":", 1)[1]
        seconds = sorted(s for s, _ in runs)[len(runs) // 2]
        _, prims = runs[-1]
        convs = [(impl, shape, ms, conv_flops(shape)) for kind, impl, shape, ms in prims if kind == "convolution"]
        conv_ms = sum(c[2] for c in convs)
        all_ms = sum(p[3] for p in prims)
        flops = sum(c[3] for c in convs)
        rate = flops / conv_ms / 1e6 if conv_ms else float("nan")
        print(f"\n{name}, batch {batch}, {FLAGS.size} px, {FLAGS.policy}, batch norms folded: forward "
              f"{1e3 * seconds / batch:.1f} ms/img (median of {len(runs)} calls, {seconds:.3f} s)")
        print(f"  last call by oneDNN: {len(prims)} primitives {all_ms:.0f} ms, of them {len(convs)} convolutions "
              f"{conv_ms:.0f} ms ({100 * conv_ms / (1e3 * runs[-1][0]):.0f}% of the call)")
        print(f"  convolutions: {flops / batch / 1e9:.2f} GFLOP an image, {rate:.0f} GFLOP/s "
              f"(the whole call {flops / runs[-1][0] / 1e9:.0f} GFLOP/s)")
        for impl, shape, ms, f in sorted(convs, key=lambda c: -c[2])[:FLAGS.top]:
            print(f"    {ms:7.1f} ms {f / ms / 1e6:5.0f} GFLOP/s  {impl:34s} {shape}")
        last = (name, 1e3 * seconds / batch, rate)
    if last:
        print(f"forward {last[1]:.1f} ms/img, convolutions {last[2]:.0f} GFLOP/s = "
              f"{last[2] / gemm_rate:.2f} of a {FLAGS.policy} GEMM ({gemm_rate:.0f} GFLOP/s)")


def main(argv):
    if FLAGS.child:
        return child(argv)
    print(cpu_line(), flush=True)
    args = [
        sys.executable, os.path.abspath(__file__), "--child", f"--models={','.join(FLAGS.models)}", f"--batch={FLAGS.batch}", f"--size={FLAGS.size}",
        f"--num_classes={FLAGS.num_classes}", f"--policy={FLAGS.policy}", f"--repeats={FLAGS.repeats}",
        f"--gemm_size={FLAGS.gemm_size}", f"--top={FLAGS.top}"]
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    proc = subprocess.run(args, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"the measuring process failed (exit {proc.returncode}); its stderr is above")
    report(parse(proc.stdout.splitlines()), FLAGS.batch)


if __name__ == "__main__":
    app.run(main)
