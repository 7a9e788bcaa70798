"""How much Hide-and-Seek in time adds to a training step of the temporal GAP model.

For each setting (batch x frames x features), three pairs are timed, each as blocks of
`--steps` `train_on_batch` steps interleaved `--repeats` times; a pair's ratio is the
median over its block pairs of (with hiding) / (without), robust to load drifts:

- `pipeline`: batches from `keras_has.temporal.data.make_dataset` (prefetched), with
  and without hiding in the pipeline (`hide_in=data`, what `train_temporal` does by
  default): the cost a training run pays.
- `layer`: one fixed batch, the model with and without a `TemporalHideAndSeek` first
  layer (`hide_in=model`): hiding inside the step itself.
- `op`: the hiding op alone (`tf.function`) on that batch, against the plain step.

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
    # (its blocks are shorter: steps * 10 / hidden steps)
    "thumos_like": dict(batch=16, frames=256, dim=1024, hidden=128, classes=20),
}
SEGMENTS = (0, 4, 8, 16)


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _interleaved(variants, repeats, steps):
    """Median seconds per step of each variant, and per-block times."""
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, step in variants.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - t0) / steps)
    return times


def run_setting(name, repeats, steps):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_has.temporal import build_temporal_gap, hide_segments
    from keras_has.temporal.data import Video, make_dataset
    from keras_has.temporal.training import normalized_target_loss

    s = SETTINGS[name]
    steps = max(2, steps * 10 // s["hidden"]) if s["hidden"] > 64 else steps
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
    op = tf.function(lambda f, mk, seed: hide_segments(f, SEGMENTS, 0.5, 0.0, seed=seed, mask=mk))
    counter = iter(range(10**9))
    variants["op"] = lambda: op(features, mask, tf.constant([next(counter), 0])).numpy()
    variants["op"]()
    times = _interleaved(variants, repeats, steps)

    def ratio(a, b):
        return _median([p / q for p, q in zip(times[a], times[b])])

    med = {k: _median(v) * 1e3 for k, v in times.items()}
    return [(name, s, "pipeline (hide_in=data)", med["pipe_plain"], med["pipe_hiding"],
             ratio("pipe_hiding", "pipe_plain")),
            (name, s, "layer (hide_in=model)", med["step_plain"], med["step_layer"],
             ratio("step_layer", "step_plain")),
            (name, s, "op alone vs plain step", med["step_plain"], med["op"],
             ratio("op", "step_plain"))]


def main(argv):
    del argv
    rows = []
    for n in FLAGS.settings:
        rows += run_setting(n, FLAGS.repeats, FLAGS.steps)
    print("| setting | batch x T x D | where hiding runs | without (ms/step) | with (ms/step) "
          "| ratio |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, s, where, plain, hidden, ratio in rows:
        print(f"| {name} | {s['batch']}x{s['frames']}x{s['dim']} | {where} | {plain:.2f} | "
              f"{hidden:.2f} | {ratio:.3f} |")
    print("(ratio: median over interleaved block pairs; for 'op alone' the op's time / the "
          "plain step's)")


if __name__ == "__main__":
    app.run(main)
