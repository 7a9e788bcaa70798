"""How much Hide-and-Seek in time adds to a training step of the temporal GAP model.

For each setting (batch x frames x features), three pairs are timed, each as blocks of
`--steps` `train_on_batch` steps interleaved `--repeats` times; a pair's ratio is the
median over its block pairs of (with hiding) / (without), robust to load drifts, in
wall time and in process CPU time (all threads of this process, tf.data's included:
less sensitive to other processes on a shared machine):

- `pipeline`: batches from `keras_has.temporal.data.make_dataset` (prefetched), with
  and without hiding in the pipeline (`hide_in=data`, what `train_temporal` does by
  default): the cost a training run pays.
- `layer`: one fixed batch, the model with and without a `TemporalHideAndSeek` first
  layer (`hide_in=model`): hiding inside the step itself.
- `op`: the hiding op alone on that batch (10 applications in one graph, so that the
  Python-to-TensorFlow call overhead is not counted), against the plain step, and the
  floor of any op that writes a new batch: a multiply of the same batch.

Usage:
    python scripts/benchmark_temporal_hiding.py --repeats=15 --steps=20
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("repeats", 15, "Interleaved blocks per variant.")
flags.DEFINE_integer("steps", 20, "Training steps per block.")
flags.DEFINE_list("settings", ["synthetic", "thumos_like"],
                  "synthetic: B32 T128 D32 hidden 64; thumos_like: B16 T256 D1024 hidden 128.")
FLAGS = flags.FLAGS

SETTINGS = {
    "synthetic": dict(batch=32, frames=128, dim=32, hidden=64, classes=6),
    # (its blocks are shorter: max(5, steps / 4) steps)
    "thumos_like": dict(batch=16, frames=256, dim=1024, hidden=128, classes=20),
}
SEGMENTS = (0, 4, 8, 16)


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _interleaved(variants, repeats, steps):
    """Per-block wall and process-CPU seconds per step of each variant."""
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in variants.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                step()
            wall[name].append((time.perf_counter() - t0) / steps)
            cpu[name].append((time.process_time() - c0) / steps)
    return wall, cpu


def run_setting(name, repeats, steps):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_has.temporal import build_temporal_gap, hide_segments
    from keras_has.temporal.data import Video, make_dataset
    from keras_has.temporal.training import normalized_target_loss

    s = SETTINGS[name]
    steps = max(5, steps // 4) if s["hidden"] > 64 else steps
    rng = np.random.default_rng(0)
    hiding = {"segment_lengths": SEGMENTS, "hide_prob": 0.5, "fill_value": 0.0}

    def model(with_layer):
        m = build_temporal_gap(s["classes"], s["dim"], hidden=s["hidden"], seed=0,
                               hiding=hiding if with_layer else None)
        m.compile(keras.optimizers.Adam(1e-3), loss=normalized_target_loss)
        return m

    # Fixed batch, half of it padded.
    x = {"features": rng.standard_normal([s["batch"], s["frames"], s["dim"]]).astype(np.float32),
         "mask": np.ones([s["batch"], s["frames"]], np.float32)}
    x["mask"][::2, s["frames"] * 3 // 4:] = 0.0
    y = np.eye(s["classes"], dtype=np.float32)[rng.integers(0, s["classes"], s["batch"])]
    # Pipelines over 4 batches of videos, repeated.
    videos = [Video(f"v{i}", rng.standard_normal([s["frames"] - (i % 2) * s["frames"] // 4,
                                                  s["dim"]]).astype(np.float32),
                    (int(i % s["classes"]),), (), 1.0) for i in range(4 * s["batch"])]
    iters = {}
    for arm, h in (("plain", None), ("hiding", hiding)):
        iters[arm] = iter(make_dataset(videos, s["classes"], s["batch"], shuffle=True, seed=0,
                                       drop_remainder=True, hiding=h).repeat())
    plain_m, layer_m = model(False), model(True)
    pipe_plain, pipe_hide = model(False), model(False)

    def from_iter(m, it):
        return lambda: m.train_on_batch(*next(it))

    variants = {
        "step_plain": lambda: plain_m.train_on_batch(x, y),
        "step_layer": lambda: layer_m.train_on_batch(x, y),
        "pipe_plain": from_iter(pipe_plain, iters["plain"]),
        "pipe_hiding": from_iter(pipe_hide, iters["hiding"]),
    }
    for step in variants.values():
        for _ in range(3):
            step()  # trace and warm up
    features, mask = tf.constant(x["features"]), tf.constant(x["mask"])
    inner = 10  # op applications per call, in one graph: no per-call overhead counted

    def in_graph(body):
        @tf.function
        def run(f, mk, base):
            def step(i, acc):
                y = body(f, mk, tf.stack([base, tf.cast(i, tf.int64)]), i)
                return i + 1, acc + tf.cast(y[0, 0, 0], tf.float32)

            return tf.while_loop(lambda i, _: i < inner, step,
                                 [tf.constant(0), tf.constant(0.0)])[1]
        return run

    # The op, and the floor of any op writing a new batch (a multiply, made to depend on
    # the iteration so that nothing is hoisted out of the loop).
    op = in_graph(lambda f, mk, seed, i: hide_segments(f, SEGMENTS, 0.5, 0.0, seed=seed,
                                                       mask=mk))
    floor = in_graph(lambda f, mk, seed, i: f * tf.cast(i, f.dtype))
    counter = iter(range(10**9))

    def run_op():
        op(features, mask, tf.constant(next(counter), tf.int64)).numpy()

    def run_floor():
        floor(features, mask, tf.constant(next(counter), tf.int64)).numpy()

    variants["op"], variants["floor"] = run_op, run_floor
    run_op(), run_floor()
    wall, cpu = _interleaved(variants, repeats, steps)

    def ratio(times, a, b):
        return _median([p / q for p, q in zip(times[a], times[b])])

    for name_ in ("op", "floor"):  # per application
        wall[name_] = [t / inner for t in wall[name_]]
        cpu[name_] = [t / inner for t in cpu[name_]]
    rows = []
    for label, a, b in (("pipeline (hide_in=data)", "pipe_hiding", "pipe_plain"),
                        ("layer (hide_in=model)", "step_layer", "step_plain"),
                        ("op alone vs plain step", "op", "step_plain"),
                        ("copy floor (x * i) vs plain step", "floor", "step_plain")):
        rows.append((name, s, label, _median(wall[b]) * 1e3, _median(wall[a]) * 1e3,
                     ratio(wall, a, b), _median(cpu[b]) * 1e3, _median(cpu[a]) * 1e3,
                     ratio(cpu, a, b)))
    return rows


def main(argv):
    del argv
    rows = []
    for n in FLAGS.settings:
        rows += run_setting(n, FLAGS.repeats, FLAGS.steps)
    print("| setting | batch x T x D | where hiding runs | wall ms/step without -> with | "
          "wall ratio | CPU ms/step without -> with | CPU ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for name, s, where, w0, w1, wr, c0, c1, cr in rows:
        print(f"| {name} | {s['batch']}x{s['frames']}x{s['dim']} | {where} | "
              f"{w0:.2f} -> {w1:.2f} | {wr:.3f} | {c0:.2f} -> {c1:.2f} | {cr:.3f} |")
    print("(ratio: median over interleaved block pairs; for 'op alone' and 'copy floor' the "
          "op's time per application, 10 applications in one graph, / the plain step's)")


if __name__ == "__main__":
    app.run(main)
