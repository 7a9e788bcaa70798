"""Boxes from class activation maps, and box IoU.

Conventions (docs/architecture.md):

* Boxes are ``x0, y0, x1, y1`` in pixels of the map they were read from, inclusive
  corners: a box's width is ``x1 - x0 + 1``.
* A CAM threshold ``t`` is a fraction of each map's maximum after min-max
  normalisation. The map is quantised like wsolevaluation does it,
  ``gray = uint8(floor(cam * 255))``, and the foreground at ``t`` is
  ``gray > level`` with ``level = int(t * max(gray))`` (``cv2.threshold``'s
  ``THRESH_BINARY`` semantics). Every threshold therefore maps to one of at most 256
  integer *levels*, and the whole threshold sweep only has that many distinct
  foregrounds.

Two box rules:

* ``box_rule="tight"`` (default, the project's rule, also implemented in-graph by the
  exported SavedModel): regions are the 8-connected components of the foreground; the
  largest region has the most pixels, ties going to the region whose first pixel in
  row-major order comes first; its box is the tight inclusive box of its pixels. No
  foreground gives ``(0, 0, 0, 0)``.
* ``box_rule="wsolevaluation"``: reproduces clovaai/wsolevaluation's
  ``compute_bboxes_from_scoremaps``: contours from ``cv2.findContours(RETR_TREE,
  CHAIN_APPROX_SIMPLE)`` (hole contours included), the largest is the one of maximal
  ``cv2.contourArea`` (first in OpenCV's order on ties), and its box is
  ``x, y, x + w, y + h`` from ``cv2.boundingRect`` with ``x1, y1`` clipped to
  ``W - 1, H - 1``; i.e. one pixel wider and taller than the tight inclusive box unless
  the region touches the right / bottom border. See docs/design/evaluation.md.

The threshold sweep (:func:`sweep_levels`) reads the regions
of every level from one pass per map over the pixels sorted by value (a compiled
union-find), instead of one OpenCV call per threshold.
"""
from __future__ import annotations

import dataclasses
import threading

import cv2
import numba
import numpy as np

__all__ = ['check_box_rule', 'check_boxes', 'NORMALIZATIONS', 'IVR_PERCENTILE', 'check_normalization', 'normalize_cams', 'resize_cams', 'quantize_cams', 'threshold_levels', 'iou', 'best_iou', 'boxes_at_level', 'boxes_from_cams', 'LevelSweep', 'sweep_levels', 'region_table', 'check_gray_map']

BOX_RULES = ("tight", "wsolevaluation")


# --------------------------------------------------------------------------- inputs

def _as_maps(cams, name="cams"):
    """Returns ``cams`` as a float array [B, H, W] (a single [H, W] map gets B = 1)."""
    arr = np.asarray(cams)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name}: expected a numeric array, received dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"{name}: expected shape [B, H, W] (or [H, W]) with H, W >= 1, "
                         f"received shape {tuple(np.shape(cams))}")
    return arr


def _check_unit_range(maps, name="cams"):
    # min and max carry any NaN or inf (no array-sized temporary).
    lo, hi = float(maps.min(initial=0.0)), float(maps.max(initial=0.0))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: contains NaN or inf; pass the maps through "
                         "normalize_cams() first (it turns such maps into zeros)")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: expected values in [0, 1] (min-max normalised maps), "
                         f"received min {lo:g}, max {hi:g}; use normalize_cams()")


def check_box_rule(box_rule):
    """Raises ValueError unless `box_rule` is one of `BOX_RULES`."""
    if box_rule not in BOX_RULES:
        raise ValueError(f"box_rule: expected one of {BOX_RULES}, received {box_rule!r}")


def check_boxes(boxes, name="boxes", allow_padding=False):
    """Checks an ``[..., 4]`` array of inclusive ``x0, y0, x1, y1`` boxes.

    Args:
        boxes: array-like ``[..., 4]``.
        name: argument name used in error messages.
        allow_padding: if True, rows that are all ``-1`` (padding) are accepted.

    Returns:
        The boxes as a float64 array.

    Raises:
        ValueError: wrong last dimension, non-finite values, or ``x1 < x0`` /
            ``y1 < y0`` / negative coordinates on a non-padding row.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise ValueError(f"{name}: expected shape [..., 4] (x0, y0, x1, y1), received "
                         f"shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf")
    rows = arr.reshape(-1, 4)
    valid = ~np.all(rows == -1, axis=1) if allow_padding else np.ones(len(rows), bool)
    bad = valid & ((rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])
                   | (rows[:, :2] < 0).any(axis=1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: box {np.unravel_index(i, arr.shape[:-1]) if arr.ndim > 1 else ()} "
                         f"= {rows[i].tolist()} violates the x0, y0, x1, y1 inclusive "
                         "convention (expected 0 <= x0 <= x1 and 0 <= y0 <= y1)")
    return arr


# ----------------------------------------------------------------- maps: normalise

NORMALIZATIONS = ("minmax", "max", "ivr")
# IVR's percentile: the default of the authors' code (GenDisc/IVR config.py, --percentile).
IVR_PERCENTILE = 0.45


def check_normalization(normalization, percentile=IVR_PERCENTILE):
    """Raises ValueError unless `normalization` is one of `NORMALIZATIONS` and
    `percentile` a fraction in [0, 1)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization: expected one of {NORMALIZATIONS}, received {normalization!r}")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
            or not 0.0 <= percentile < 1.0:
        raise ValueError(f"percentile: expected a fraction in [0, 1), received {percentile!r}")


def normalize_cams(cams, normalization="minmax", percentile=IVR_PERCENTILE):
    """Per-map normalisation to [0, 1].

    Args:
        cams: array-like ``[B, H, W]`` (or one ``[H, W]`` map).
        normalization: how each map ``x`` is scaled (Kim et al., "Normalization Matters
            in Weakly Supervised Object Localization", ICCV 2021):

            * ``"minmax"`` (default): ``(x - min) / (max - min)``;
            * ``"max"``: ``max(x, 0) / max``;
            * ``"ivr"`` (inferior value removal): ``max(x - q, 0) / (max - q)`` with ``q``
              the ``percentile`` order statistic of the map (``sorted(x)[int(n *
              percentile)]``, ``n`` pixels), i.e. the minimum of min-max replaced by a
              percentile, values below it clipped to 0.
        percentile: IVR's fraction in [0, 1); default `IVR_PERCENTILE`, the authors'
            code's default, a value they tune per dataset.

    Returns:
        float32 ``[B, H, W]``. A constant map, one containing NaN or inf, and (``max``,
        ``ivr``) a map with nothing above 0 / above ``q`` become all zeros (as
        wsolevaluation's ``normalize_scoremap`` does for NaN and constant maps).
    """
    check_normalization(normalization, percentile)
    maps = _as_maps(cams)
    flat = maps.reshape(len(maps), -1).astype(np.float32, copy=False)
    # A map's max and min carry any NaN or inf in it; such a map (and a constant one)
    # becomes zeros. One output array and no other map-sized temporary (minmax, max).
    hi, lo_all = flat.max(axis=1, initial=-np.inf), flat.min(axis=1, initial=np.inf)
    finite = np.isfinite(hi) & np.isfinite(lo_all)
    hi = np.where(finite, hi, 0).astype(np.float32)
    mins = np.where(finite, lo_all, 0).astype(np.float32)
    if normalization == "minmax":
        lo = mins
    elif normalization == "max":
        lo = np.zeros_like(hi)
    else:
        k = int(flat.shape[1] * percentile)
        lo = np.zeros_like(hi)
        lo[finite] = np.partition(flat[finite], k, axis=1)[:, k]
    span = (hi - lo).astype(np.float32)
    ok = finite & (span > 0) & (mins < hi)
    out = np.zeros(flat.shape, np.float32)
    if ok.all():
        np.subtract(flat, lo[:, None], out=out)
        np.divide(out, span[:, None], out=out)
    else:
        out[ok] = (flat[ok] - lo[ok, None]) / span[ok, None]
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape(maps.shape)


def resize_cams(cams, size):
    """Bilinear upsampling (or downsampling) of ``[B, h, w]`` maps to ``size = (H, W)``.

    Uses ``cv2.resize(..., INTER_LINEAR)`` (half-pixel centres, the same sampling as
    ``tf.image.resize(method="bilinear")`` and as wsolevaluation).

    Returns:
        float32 ``[B, H, W]``.
    """
    maps = _as_maps(cams).astype(np.float32)
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (height, width), received {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"size: expected positive (height, width), received {size!r}")
    if maps.shape[1:] == (height, width):
        return maps.copy()
    out = np.empty((len(maps), height, width), np.float32)
    for i, m in enumerate(maps):
        cv2.resize(m, (width, height), dst=out[i], interpolation=cv2.INTER_LINEAR)
    return out


def quantize_cams(cams):
    """``uint8(floor(cam * 255))`` of maps already in [0, 1], as wsolevaluation does."""
    maps = _as_maps(cams)
    _check_unit_range(maps)
    return (maps.astype(np.float32, copy=False) * 255).astype(np.uint8)


def threshold_levels(thresholds, max_gray):
    """Integer levels ``int(t * max_gray)`` for each threshold (foreground is ``gray > level``).

    The product is taken in float64 exactly like ``int(threshold * np.max(image))`` in
    wsolevaluation, so both agree on every threshold of a ``np.arange`` sweep.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    return np.floor(t * float(max_gray)).astype(np.int64)


# ------------------------------------------------------------------------ IoU

def iou(boxes_a, boxes_b):
    """Pairwise IoU ``[N, M]`` of inclusive ``x0, y0, x1, y1`` boxes.

    Areas count pixels: ``(x1 - x0 + 1) * (y1 - y0 + 1)``; e.g. ``(0, 0, 1, 1)`` and
    ``(1, 1, 2, 2)`` share one pixel of 4 + 4 - 1 = 7, IoU 1/7.

    Args:
        boxes_a: ``[N, 4]`` (or one ``[4]`` box).
        boxes_b: ``[M, 4]`` (or one ``[4]`` box).

    Returns:
        float64 ``[N, M]``.
    """
    a = check_boxes(np.atleast_2d(boxes_a), "boxes_a")
    b = check_boxes(np.atleast_2d(boxes_b), "boxes_b")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"iou: expected [N, 4] and [M, 4], received {a.shape} and {b.shape}")
    return _iou_unchecked(a, b)


def _iou_unchecked(a, b):
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0 + 1, 0, None) * np.clip(iy1 - iy0 + 1, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_iou(boxes, gt_boxes):
    """For each box, the IoU with its best-matching ground-truth box: ``[N]``."""
    gt = np.atleast_2d(np.asarray(gt_boxes, np.float64))
    if gt.size == 0:
        return np.zeros(len(np.atleast_2d(boxes)))
    return _iou_unchecked(np.atleast_2d(np.asarray(boxes, np.float64)), gt).max(axis=1)


# ------------------------------------------------------- single-level box reading

def _regions_tight(fg):
    """(counts, boxes, first) of the 8-connected regions of a binary uint8 image."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    st = stats[1:].astype(np.int64)
    boxes = np.stack([st[:, 0], st[:, 1], st[:, 0] + st[:, 2] - 1,
                      st[:, 1] + st[:, 3] - 1], axis=1)
    # First pixel of each label in row-major order, independent of OpenCV's label order.
    values, first_idx = np.unique(labels.ravel(), return_index=True)
    first = np.zeros(n, np.int64)
    first[values] = first_idx
    return st[:, 4], boxes, first[1:]


def _largest(counts, first):
    """Index of the largest region: most pixels, ties to the smallest first pixel."""
    return int(np.lexsort((first, -counts))[0])


def _regions_wsol(fg):
    """(areas, boxes) of all contours, wsolevaluation's way, in OpenCV's order."""
    height, width = fg.shape
    contours = cv2.findContours(fg, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.zeros(0), np.zeros((0, 4), np.int64)
    areas = np.array([cv2.contourArea(c) for c in contours], np.float64)
    rects = np.array([cv2.boundingRect(c) for c in contours], np.int64)
    boxes = np.stack([rects[:, 0], rects[:, 1],
                      np.minimum(rects[:, 0] + rects[:, 2], width - 1),
                      np.minimum(rects[:, 1] + rects[:, 3], height - 1)], axis=1)
    return areas, boxes


def boxes_at_level(gray, level, multi_contour=False, box_rule="tight"):
    """Boxes of one quantised map at one integer level (foreground ``gray > level``).

    Returns:
        ``[4]`` int64 (largest region) or ``[N, 4]`` (all regions). No foreground gives
        ``(0, 0, 0, 0)`` (one row of zeros with ``multi_contour=True``, as
        wsolevaluation does).
    """
    fg = np.ascontiguousarray((gray > level).astype(np.uint8))
    if box_rule == "tight":
        counts, boxes, first = _regions_tight(fg)
        if len(counts) == 0:
            return np.zeros((1, 4) if multi_contour else 4, np.int64)
        return boxes if multi_contour else boxes[_largest(counts, first)]
    areas, boxes = _regions_wsol(fg)
    if len(areas) == 0:
        return np.zeros((1, 4) if multi_contour else 4, np.int64)
    return boxes if multi_contour else boxes[int(np.argmax(areas))]


def boxes_from_cams(cams, threshold, multi_contour=False, box_rule="tight"):
    """Boxes of CAMs binarised at ``threshold`` times each map's maximum.

    Args:
        cams: ``[B, H, W]`` maps in [0, 1] (use :func:`normalize_cams`), or one ``[H, W]``.
        threshold: float in [0, 1]; foreground is ``uint8(floor(cam * 255)) >
            int(threshold * max)``.
        multi_contour: False: the box of the largest region per map; True: the boxes
            of all regions.
        box_rule: ``"tight"`` (default, see module docstring) or ``"wsolevaluation"``.

    Returns:
        ``multi_contour=False``: int64 ``[B, 4]``; ``True``: a list of B int64 ``[Ni, 4]``
        arrays. Inclusive ``x0, y0, x1, y1``; ``(0, 0, 0, 0)`` when nothing is above the
        threshold.
    """
    check_box_rule(box_rule)
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold: expected a fraction in [0, 1], received {threshold!r}")
    gray = quantize_cams(cams)
    out = [boxes_at_level(g, int(threshold_levels(t, g.max())), multi_contour, box_rule)
           for g in gray]
    return out if multi_contour else np.stack(out).astype(np.int64)


# ---------------------------------------------------------- the sweep: all levels
#
# One pass per map over the pixels sorted by gray value, descending. Activating every
# pixel of value v (and joining it to its already-active 8-neighbours with a union-find)
# completes the foreground ``gray > v - 1``, so after value v the union-find's live roots
# are exactly the regions of level ``v - 1``, each root carrying its region's pixel
# count, first row-major pixel and tight box. Compiled with numba (a sequential loop over
# the pixels); the first call of a fresh install compiles it (cached on disk after that).
#
# The union-find lives on the map padded by one pixel of value 0 (never active), so a
# neighbour needs no bounds check; a pixel joins the region of its first active
# neighbour directly (it becomes a root only when it has none), and a root's fields sit
# in one row of ``info`` (count, first, x0, y0, x1, y1): one cache line per union. Its
# working arrays come from a per-thread workspace reused across maps (`_workspace`):
# fresh megabytes per map cost more in page faults than the sweep itself.

_COUNT, _FIRST, _X0, _Y0, _X1, _Y1 = range(6)


@numba.njit(cache=True, nogil=True)
def _find(parent, p):
    """Root of ``p``, halving the path on the way (no write when ``p`` is a root or a
    root's child, the common cases)."""
    while True:
        up = parent[p]
        if up == p:
            return p
        top = parent[up]
        if top == up:
            return up
        parent[p] = top
        p = top


@numba.njit(cache=True, nogil=True)
def _box_iou(x0, y0, x1, y1, gt):
    """Max IoU of one inclusive box with the rows of ``gt`` (float64, as
    :func:`_iou_unchecked` computes it, operation for operation)."""
    best = 0.0
    a0, a1, a2, a3 = float(x0), float(y0), float(x1), float(y1)
    area_a = (a2 - a0 + 1.0) * (a3 - a1 + 1.0)
    for j in range(gt.shape[0]):
        iw = min(a2, gt[j, 2]) - max(a0, gt[j, 0]) + 1.0
        ih = min(a3, gt[j, 3]) - max(a1, gt[j, 1]) + 1.0
        inter = max(iw, 0.0) * max(ih, 0.0)
        area_b = (gt[j, 2] - gt[j, 0] + 1.0) * (gt[j, 3] - gt[j, 1] + 1.0)
        union = area_a + area_b - inter
        value = inter / union if union > 0 else 0.0
        if value > best:
            best = value
    return best


def region_table(gray) -> np.ndarray:
    """Every 8-connected region of `gray > level`, for every level below the max, as
    the one-pass sweep sees them: int rows `[R, 7]` of `level, count, x0, y0, x1, y1,
    first` (pixel count, inclusive box, first pixel in row-major order), levels
    ascending. For inspecting and testing the sweep; `sweep_levels` uses the same pass."""
    gray = check_gray_map(gray)
    return _sweep(gray, np.zeros((0, 4)), True, *_workspace(gray.shape))[3][::-1]


_local = threading.local()


# Maps up to this many pixels keep their working arrays for the thread's next map
# (about 60 bytes a pixel: 15 MB at 512 x 512); larger ones get arrays of their own.
_WORKSPACE_KEPT_PIXELS = 1 << 20


def _workspace(shape):
    """The sweep's working arrays for an ``[H, W]`` map, this thread's, grown as needed:
    ``parent, info, root_iou, live_slot, is_dirty`` over the padded map, ``order,
    order_x, order_y, live, dirty`` over the pixels. The sweep leaves ``is_dirty`` all
    False, as it takes it, and sets every other entry it reads."""
    height, width = shape
    padded, pixels = (height + 2) * (width + 2), height * width + 1
    arrays = getattr(_local, "sweep", None)
    if arrays is None or len(arrays[0]) < padded or len(arrays[5]) < pixels:
        padded, pixels = max(padded, 1), max(pixels, 1)
        arrays = (np.empty(padded, np.int32), np.empty((padded, 6), np.int32),
                  np.empty(padded, np.float64), np.empty(padded, np.int32),
                  np.zeros(padded, np.bool_), np.empty(pixels, np.int32),
                  np.empty(pixels, np.int32), np.empty(pixels, np.int32),
                  np.empty(pixels, np.int32), np.empty(pixels, np.int32))
        if pixels <= _WORKSPACE_KEPT_PIXELS:
            _local.sweep = arrays
    return arrays


@numba.njit(cache=True, nogil=True)
def _sweep(gray, gt, emit, parent, info, root_iou, live_slot, is_dirty, order, order_x,
           order_y, live, dirty):
    """The one-pass sweep over a uint8 ``[H, W]`` map (working arrays from `_workspace`).

    Returns ``(largest [256, 4], has_fg [256], best_iou [256], rows [R, 7])``: per level,
    the largest region's box (most pixels, ties to the smallest first pixel), whether
    there is foreground, the max IoU of any region's box with ``gt`` ``[M, 4]``; and,
    when ``emit``, every region of every level as ``level, count, x0, y0, x1, y1,
    first`` rows in descending level order (else zero rows).
    """
    height, width = gray.shape
    wp = width + 2
    n = (height + 2) * wp
    # Counting sort of the pixels of value >= 1, descending: those of value v are
    # order[start[v]:start[v] + hist[v]] (padded index, and x, y beside it).
    hist = np.zeros(256, np.int64)
    for y in range(height):
        for x in range(width):
            hist[gray[y, x]] += 1
    start = np.zeros(256, np.int64)
    pos = 0
    max_gray = 0
    for v in range(255, 0, -1):
        start[v] = pos
        pos += hist[v]
        if hist[v] > 0 and max_gray == 0:
            max_gray = v
    fill = start.copy()
    for y in range(height):
        for x in range(width):
            v = gray[y, x]
            if v > 0:
                k = fill[v]
                order[k] = (y + 1) * wp + x + 1
                order_x[k] = x
                order_y[k] = y
                fill[v] = k + 1

    offsets = np.array([-wp - 1, -wp, -wp + 1, -1, 1, wp - 1, wp, wp + 1], np.int64)
    parent[:n] = -1  # -1: not yet active (the border never is)
    # info: per root, count, first (padded index), box; root_iou: per root, its box's
    # best IoU; live: the live roots, with their slot in live_slot; dirty: the roots
    # changed since the last level.
    num_live = 0
    num_dirty = 0

    largest = np.zeros((256, 4), np.int64)
    has_fg = np.zeros(256, np.bool_)
    best_iou = np.zeros(256, np.float64)
    rows = np.empty((64 if emit else 0, 7), np.int64)
    num_rows = 0

    for v in range(max_gray, 0, -1):
        for k in range(start[v], start[v] + hist[v]):
            p = order[k]
            r = -1
            for j in range(8):
                q = p + offsets[j]
                rq = parent[q]
                if rq < 0 or rq == r:
                    continue
                rq = _find(parent, rq)
                if rq == r:
                    continue
                if r < 0:
                    r = rq
                    continue
                if info[rq, _COUNT] > info[r, _COUNT]:  # union by size: r stays the bigger root
                    r, rq = rq, r
                parent[rq] = r
                info[r, _COUNT] += info[rq, _COUNT]
                info[r, _FIRST] = min(info[r, _FIRST], info[rq, _FIRST])
                info[r, _X0] = min(info[r, _X0], info[rq, _X0])
                info[r, _Y0] = min(info[r, _Y0], info[rq, _Y0])
                info[r, _X1] = max(info[r, _X1], info[rq, _X1])
                info[r, _Y1] = max(info[r, _Y1], info[rq, _Y1])
                slot = live_slot[rq]
                num_live -= 1
                last = live[num_live]
                live[slot] = last
                live_slot[last] = slot
            x = order_x[k]
            y = order_y[k]
            if r < 0:  # no active neighbour: a new region
                r = p
                info[p, _COUNT] = 1
                info[p, _FIRST] = p
                info[p, _X0] = x
                info[p, _Y0] = y
                info[p, _X1] = x
                info[p, _Y1] = y
                live[num_live] = p
                live_slot[p] = num_live
                num_live += 1
            else:
                info[r, _COUNT] += 1
                info[r, _FIRST] = min(info[r, _FIRST], p)
                info[r, _X0] = min(info[r, _X0], x)
                info[r, _Y0] = min(info[r, _Y0], y)
                info[r, _X1] = max(info[r, _X1], x)
                info[r, _Y1] = max(info[r, _Y1], y)
            parent[p] = r
            if not is_dirty[r]:
                is_dirty[r] = True
                dirty[num_dirty] = r
                num_dirty += 1
        # Value v done: the live roots are the regions of level v - 1.
        level = v - 1
        for i in range(num_dirty):
            d = dirty[i]
            is_dirty[d] = False
            if parent[d] == d:
                root_iou[d] = _box_iou(info[d, _X0], info[d, _Y0], info[d, _X1], info[d, _Y1], gt)
        num_dirty = 0
        big = live[0]
        top_iou = 0.0
        for i in range(num_live):
            r = live[i]
            if info[r, _COUNT] > info[big, _COUNT] or (
                    info[r, _COUNT] == info[big, _COUNT] and info[r, _FIRST] < info[big, _FIRST]):
                big = r
            top_iou = max(top_iou, root_iou[r])
            if emit:
                if num_rows == rows.shape[0]:
                    grown = np.empty((2 * num_rows, 7), np.int64)
                    grown[:num_rows] = rows
                    rows = grown
                f = info[r, _FIRST]
                rows[num_rows, 0] = level
                rows[num_rows, 1] = info[r, _COUNT]
                rows[num_rows, 2] = info[r, _X0]
                rows[num_rows, 3] = info[r, _Y0]
                rows[num_rows, 4] = info[r, _X1]
                rows[num_rows, 5] = info[r, _Y1]
                rows[num_rows, 6] = (f // wp - 1) * width + f % wp - 1
                num_rows += 1
        has_fg[level] = True
        largest[level, 0] = info[big, _X0]
        largest[level, 1] = info[big, _Y0]
        largest[level, 2] = info[big, _X1]
        largest[level, 3] = info[big, _Y1]
        best_iou[level] = top_iou
    return largest, has_fg, best_iou, rows[:num_rows]


def check_gray_map(gray):
    """`gray` as a contiguous uint8 `[H, W]` array (`quantize_cams`' output); ValueError
    otherwise."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8 or gray.size == 0:
        raise ValueError(f"gray: expected a non-empty uint8 [H, W] map (quantize_cams), "
                         f"received {gray.dtype} {gray.shape}")
    return np.ascontiguousarray(gray)


@dataclasses.dataclass
class LevelSweep:
    """What the metrics need from every level ``L`` (foreground ``gray > L``) of one map.

    Attributes:
        largest: int64 ``[256, 4]`` tight inclusive box of the largest region (most
            pixels, ties to the earliest first pixel in row-major order); ``(0, 0, 0,
            0)`` where the level has no foreground.
        has_fg: bool ``[256]``, True for levels ``< max_gray``.
        best_iou: float64 ``[256]``, max over all regions of the level of the box's IoU
            with its best-matching ground-truth box; 0 without foreground or GT boxes.
        max_gray: the map's maximum gray value.
    """
    largest: np.ndarray
    has_fg: np.ndarray
    best_iou: np.ndarray
    max_gray: int


def sweep_levels(gray, gt_boxes=None):
    """Largest region's box and best IoU of any region, at every level, in one pass.

    Args:
        gray: uint8 ``[H, W]`` quantised map (:func:`quantize_cams`).
        gt_boxes: ``[M, 4]`` inclusive ground-truth boxes (``None``: no IoU, zeros).

    Returns:
        A :class:`LevelSweep`.
    """
    gray = check_gray_map(gray)
    gt = np.zeros((0, 4)) if gt_boxes is None else check_boxes(
        np.asarray(gt_boxes, np.float64).reshape(-1, 4), "gt_boxes")
    largest, has_fg, best, _ = _sweep(gray, np.ascontiguousarray(gt), False,
                                      *_workspace(gray.shape))
    return LevelSweep(largest, has_fg, best, int(gray.max()))
