"""Threshold-sweep speed: per-threshold OpenCV loops vs the all-level sweep, one run.

Realistic CAMs: smooth random low-res maps (7x7, squared) upsampled bilinearly to
224x224 and min-max normalised. Sweep step 0.001 (1000 thresholds), as wsolevaluation.
Every path produces, per threshold, the best-match IoU of the largest region's box and
of any region's box with a fixed GT box; the script checks the tight-rule paths agree.
The sweep is compiled by numba: its first call (compile, or load from the on-disk cache)
is made and timed before the timed runs and reported separately.

    python scripts/benchmark_eval.py --num_images=20
"""
import time

from absl import app, flags
import cv2
import numba
import numpy as np

from keras_has.localize import boxes as loc
from keras_has.localize.metrics import LocalizationEvaluator

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 20, "maps per path")
flags.DEFINE_integer("size", 224, "map size")
flags.DEFINE_integer("low_res", 7, "size of the random low-res map")
flags.DEFINE_float("step", 0.001, "threshold step")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("sweep_repeats", 20, "passes of the (fast) sweep over the maps")


def make_cams(n, size, low_res, seed):
    rng = np.random.default_rng(seed)
    low = rng.random((n, low_res, low_res)).astype(np.float32) ** 2
    return loc.normalize_cams(loc.resize_cams(low, (size, size)))


def per_threshold_tight(gray, thresholds, gt):
    """One connectedComponentsWithStats per threshold (same numbers as the sweep);
    the first-pixel tie-break is only computed when the largest count is tied."""
    out1, out2 = [], []
    for t in thresholds:
        lv = int(t * gray.max())
        n, labels, st, _ = cv2.connectedComponentsWithStats(
            (gray > lv).astype(np.uint8), connectivity=8)
        if n <= 1:
            boxes = np.zeros((1, 4))
            big = boxes[0]
        else:
            st = st[1:]
            boxes = np.stack([st[:, 0], st[:, 1], st[:, 0] + st[:, 2] - 1,
                              st[:, 1] + st[:, 3] - 1], axis=1)
            tied = np.flatnonzero(st[:, 4] == st[:, 4].max())
            if len(tied) > 1:
                firsts = [np.argmax(labels.ravel() == k + 1) for k in tied]
                big = boxes[tied[int(np.argmin(firsts))]]
            else:
                big = boxes[tied[0]]
        out1.append(loc.best_iou(big[None], gt)[0])
        out2.append(loc.best_iou(boxes, gt).max())
    return np.array(out1), np.array(out2)


def per_threshold_wsol(gray, thresholds, gt):
    """wsolevaluation's loop: one findContours per threshold (its rule, issue #52)."""
    out1 = []
    for t in thresholds:
        big = loc.boxes_at_level(gray, int(t * gray.max()), False, "wsolevaluation")
        out1.append(loc.best_iou(big[None], gt)[0])
    return np.array(out1)


def sweep(gray, thresholds, gt, ev):
    v1, v2 = ev.level_ious(gray, gt)
    levels = loc.threshold_levels(thresholds, gray.max())
    return v1[levels], v2[levels]


def timed(fn, grays, *args, repeats=1):
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = [fn(g, *args) for g in grays]
    return out, repeats * len(grays) / (time.perf_counter() - t0)


def warm_up():
    """Times the sweep's first call (compile or cache load) and a fresh compile."""
    t0 = time.perf_counter()
    loc.sweep_levels(np.ones((2, 2), np.uint8), [[0, 0, 1, 1]])
    first = time.perf_counter() - t0
    how = "compiled" if loc._sweep.stats.cache_misses else "loaded from the on-disk cache"
    fresh = numba.njit(nogil=True)(loc._sweep.py_func)  # uncached copy of the kernel
    t0 = time.perf_counter()
    fresh(np.ones((2, 2), np.uint8), np.zeros((1, 4)), False, *loc._workspace((2, 2)))
    return first, how, time.perf_counter() - t0


def main(_):
    cams = make_cams(FLAGS.num_images, FLAGS.size, FLAGS.low_res, FLAGS.seed)
    grays = loc.quantize_cams(cams)
    thresholds = np.arange(0, 1, FLAGS.step)
    s = FLAGS.size
    gt = np.array([[s // 4, s // 4, 3 * s // 4, 3 * s // 4]], float)
    ev = LocalizationEvaluator(cam_curve_interval=FLAGS.step)
    ev_w = LocalizationEvaluator(cam_curve_interval=FLAGS.step, box_rule="wsolevaluation")
    first_call, how, compile_s = warm_up()
    fast, fast_ips = timed(sweep, grays, thresholds, gt, ev, repeats=FLAGS.sweep_repeats)
    ref, ref_ips = timed(per_threshold_tight, grays, thresholds, gt)
    wsol, wsol_ips = timed(per_threshold_wsol, grays, thresholds, gt)
    wsol_lv, wsol_lv_ips = timed(sweep, grays, thresholds, gt, ev_w)
    agree = all(np.allclose(a[0], b[0]) and np.allclose(a[1], b[1])
                for a, b in zip(fast, ref))
    agree_w = all(np.allclose(a, b[0]) for a, b in zip(wsol, wsol_lv))
    # How often the two rules give a different largest box (per map and threshold).
    diff = same_choice = total = 0
    for g in grays:
        lv_set = np.unique(loc.threshold_levels(thresholds, g.max()))
        largest = loc.sweep_levels(g).largest
        for lv in lv_set[lv_set < g.max()]:
            w = loc.boxes_at_level(g, int(lv), False, "wsolevaluation")
            t = largest[lv]
            total += 1
            diff += not np.array_equal(w, t)
            # Same region chosen (wsol box = tight box grown by one on x1 / y1, clipped)?
            grown = np.minimum(t + [0, 0, 1, 1], [s, s, s - 1, s - 1])
            same_choice += np.array_equal(w, grown)
    print(f"{FLAGS.num_images} maps {s}x{s}, {len(thresholds)} thresholds (step {FLAGS.step}); "
          f"sweep timed over {FLAGS.sweep_repeats} passes")
    print(f"numba sweep first call: {first_call:.2f} s ({how}); a fresh uncached compile "
          f"of the kernel: {compile_s:.2f} s (both excluded from images/s)")
    print(f"{'path':58s} {'images/s':>9s} {'ratio':>7s}")
    print(f"{'per-threshold connectedComponentsWithStats (tight)':58s} {ref_ips:9.2f} {1:7.1f}")
    print(f"{'one-pass sweep (numba union-find), tight rule (V1 + V2)':58s} {fast_ips:9.2f} "
          f"{fast_ips / ref_ips:7.1f}")
    print(f"{'per-threshold findContours (wsolevaluation rule, V1)':58s} {wsol_ips:9.2f} "
          f"{wsol_ips / ref_ips:7.1f}")
    print(f"{'per-distinct-level findContours (wsolevaluation, V1+V2)':58s} "
          f"{wsol_lv_ips:9.2f} {wsol_lv_ips / ref_ips:7.1f}")
    print(f"sweep / findContours loop: {fast_ips / wsol_ips:.1f}x")
    print(f"tight sweep == per-threshold loop: {agree}; wsol per-level == per-threshold: "
          f"{agree_w}")
    print(f"largest box differs between rules at {100 * diff / total:.1f}% of (map, level); "
          f"different region chosen at {100 * (total - same_choice) / total:.2f}%")


if __name__ == "__main__":
    app.run(main)
