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
  the region touches the right / bottom border. See docs/notes/issue-5.md.

The threshold sweep (:func:`component_table`) computes the regions of every level in
one pass per map (see :func:`_component_table_fast`), instead of one OpenCV call per
threshold.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

BOX_RULES = ("tight", "wsolevaluation")
NUM_LEVELS = 256
_KERNEL3 = np.ones((3, 3), np.uint8)


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
    if not np.isfinite(maps).all():
        raise ValueError(f"{name}: contains NaN or inf; pass the maps through "
                         "normalize_cams() first (it turns such maps into zeros)")
    lo, hi = float(maps.min(initial=0.0)), float(maps.max(initial=0.0))
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: expected values in [0, 1] (min-max normalised maps), "
                         f"received min {lo:g}, max {hi:g}; use normalize_cams()")


def _check_box_rule(box_rule):
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

def normalize_cams(cams):
    """Per-map min-max normalisation to [0, 1].

    Args:
        cams: array-like ``[B, H, W]`` (or one ``[H, W]`` map).

    Returns:
        float32 ``[B, H, W]``. A constant map, or one containing NaN or inf, becomes
        all zeros (as wsolevaluation's ``normalize_scoremap`` does for NaN maps).
    """
    maps = _as_maps(cams).astype(np.float32, copy=True)
    flat = maps.reshape(len(maps), -1)
    finite = np.isfinite(flat).all(axis=1)
    lo = np.where(finite, flat.min(axis=1), 0.0)
    hi = np.where(finite, flat.max(axis=1), 0.0)
    span = (hi - lo).astype(np.float32)
    ok = finite & (span > 0)
    out = np.zeros_like(flat)
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
        out[i] = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR)
    return out


def quantize_cams(cams):
    """``uint8(floor(cam * 255))`` of maps already in [0, 1], as wsolevaluation does."""
    maps = _as_maps(cams)
    _check_unit_range(maps)
    return (maps.astype(np.float32) * 255).astype(np.uint8)


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
    _check_box_rule(box_rule)
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold: expected a fraction in [0, 1], received {threshold!r}")
    gray = quantize_cams(cams)
    out = [boxes_at_level(g, int(threshold_levels(t, g.max())), multi_contour, box_rule)
           for g in gray]
    return out if multi_contour else np.stack(out).astype(np.int64)


# ---------------------------------------------------------- the sweep: all levels

@dataclasses.dataclass
class ComponentTable:
    """All regions of one quantised map at every level ``0 .. max(gray) - 1``.

    Row ``r`` is one region (8-connected component of ``gray > level[r]``).

    Attributes:
        level: int64 ``[R]``, sorted ascending.
        count: int64 ``[R]`` pixels.
        box: int64 ``[R, 4]`` tight inclusive box.
        first: int64 ``[R]`` row-major index of the region's first pixel.
        max_gray: the map's maximum gray value (levels >= it have no foreground).
    """
    level: np.ndarray
    count: np.ndarray
    box: np.ndarray
    first: np.ndarray
    max_gray: int

    def largest(self):
        """``(boxes [256, 4], has_fg [256])``: largest region's box at each level."""
        boxes = np.zeros((NUM_LEVELS, 4), np.int64)
        has = np.zeros(NUM_LEVELS, bool)
        if len(self.level):
            # Sort by level, then count descending, then first ascending: the first row
            # of each level is that level's largest region.
            order = np.lexsort((self.first, -self.count, self.level))
            lv = self.level[order]
            starts = order[np.r_[True, lv[1:] != lv[:-1]]]
            boxes[self.level[starts]] = self.box[starts]
            has[self.level[starts]] = True
        return boxes, has

    def best_iou_per_level(self, gt_boxes):
        """``[256]``: the max IoU over all regions and ``gt_boxes`` at each level."""
        out = np.zeros(NUM_LEVELS)
        if len(self.level) and len(gt_boxes):
            ious = _iou_unchecked(self.box.astype(np.float64),
                                  np.asarray(gt_boxes, np.float64)).max(axis=1)
            np.maximum.at(out, self.level, ious)
        return out


def _table_from_rows(rows, max_gray):
    if not rows:
        return ComponentTable(np.zeros(0, np.int64), np.zeros(0, np.int64),
                              np.zeros((0, 4), np.int64), np.zeros(0, np.int64), max_gray)
    level, count, box, first = (np.concatenate(x) for x in zip(*rows))
    return ComponentTable(level.astype(np.int64), count.astype(np.int64),
                          box.reshape(-1, 4).astype(np.int64), first.astype(np.int64),
                          int(max_gray))


def component_table_reference(gray, levels=None):
    """Reference: one ``cv2.connectedComponentsWithStats`` per level. Slow, obvious."""
    gray = np.asarray(gray, np.uint8)
    max_gray = int(gray.max())
    todo = range(max_gray) if levels is None else sorted({int(v) for v in levels
                                                           if 0 <= v < max_gray})
    rows = []
    for lv in todo:
        counts, boxes, first = _regions_tight(
            np.ascontiguousarray((gray > lv).astype(np.uint8)))
        rows.append((np.full(len(counts), lv), counts, boxes, first))
    return _table_from_rows(rows, max_gray)


def _regional_maxima_values(gray):
    """Values of the regional-maximum plateaus of ``gray`` (8-connectivity), ``v >= 1``.

    A regional maximum is a connected flat zone whose neighbours are all lower. Each
    one gives birth to a new component when the level drops below its value.
    """
    dil = cv2.dilate(gray, _KERNEL3, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    cand = (gray == dil) & (gray > 0)
    if not cand.any():
        return np.zeros(0, np.int64)
    n, labels = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
    # A candidate plateau is not regional if one of its pixels has an equal-valued
    # neighbour that is not a candidate (that neighbour has a higher neighbour).
    height, width = gray.shape
    gp = np.pad(gray.astype(np.int16), 1, constant_values=-1)
    cp = np.pad(cand, 1, constant_values=False)
    bad = np.zeros_like(cand)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            gs = gp[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
            cs = cp[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
            bad |= (gs == gray) & ~cs
    bad &= cand
    flat_labels = labels[cand]
    values = np.zeros(n, np.int64)
    values[flat_labels] = gray[cand]
    good = np.ones(n, bool)
    good[0] = False
    good[np.unique(labels[bad])] = False
    return values[good]


def _component_table_fast(gray):
    """All regions at all levels from a handful of labellings per map.

    Idea. Let ``n(L)`` be the number of regions of ``gray > L`` and ``A(L)`` the number
    of regional-maximum plateaus with value ``> L`` (every region contains at least one,
    each plateau is born as a new region, and regions only ever merge as ``L``
    decreases), so ``D(L) = A(L) - n(L)`` counts the merges at levels ``>= L``. If
    ``D(a) == D(b)`` no merge happens in ``[a, b)`` and, for every ``L`` in ``[a, b]``,
    the regions of ``gray > L`` are exactly the regions of ``gray > a`` restricted to
    ``gray > L`` (each such restriction is connected, because all the maxima it
    contains are already joined at ``a`` and nothing joins between). So a bisection on
    ``D`` finds a few anchor levels (about one per merge, times log2(256) at worst)
    whose ``cv2.connectedComponents`` labels describe every level; per-(region, gray
    value) counts / bounding boxes / first pixels, accumulated downwards over gray
    values (and over the regions nested inside from higher intervals), give every
    region's stats at every level. Each labelling runs on the crop that holds the
    foreground. Exact for any map (tests compare it with
    :func:`component_table_reference`); fast when maps have few maxima (smooth CAMs).
    """
    gray = np.ascontiguousarray(gray, np.uint8)
    height, width = gray.shape
    max_gray = int(gray.max())
    if max_gray == 0:
        return _table_from_rows([], 0)
    top = max_gray - 1  # levels 0 .. top have foreground

    births = np.bincount(_regional_maxima_values(gray), minlength=NUM_LEVELS + 1)
    alive = np.cumsum(births[::-1])[::-1]  # alive[v] = plateaus with value >= v
    row_max = gray.max(axis=1)
    col_max = gray.max(axis=0)

    cache = {}

    def label(lv):
        if lv not in cache:
            ys = np.flatnonzero(row_max > lv)
            xs = np.flatnonzero(col_max > lv)
            y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
            crop = np.ascontiguousarray((gray[y0:y1, x0:x1] > lv).astype(np.uint8))
            n, lab = cv2.connectedComponents(crop, connectivity=8, ltype=cv2.CV_32S)
            cache[lv] = (n - 1, lab, y0, x0)
        return cache[lv]

    def merges_at_or_above(lv):
        return int(alive[lv + 1]) - label(lv)[0]

    anchors = []  # levels whose labels describe [anchor, next anchor)

    def bisect(a, b):
        if merges_at_or_above(a) == merges_at_or_above(b) or b - a <= 1:
            anchors.append(a)
            if b - a == 1 and merges_at_or_above(a) != merges_at_or_above(b):
                anchors.append(b)
            return
        mid = (a + b) // 2
        bisect(a, mid)
        bisect(mid, b)

    if top == 0:
        anchors = [0]
    else:
        bisect(0, top)
    anchors = sorted(set(anchors))
    bounds = anchors + [top + 1]

    # Pixels sorted by gray value (counting sort); pixel p enters at level gray[p] - 1.
    flat = gray.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_vals = flat[order]
    # Interval j holds levels [bounds[j], bounds[j+1]); its own pixels have entry level
    # in it, i.e. gray value in [bounds[j] + 1, bounds[j+1]] (the last also takes the top).
    lo_idx = np.searchsorted(sorted_vals, np.asarray(bounds[:-1]) + 1, side="left")
    hi_vals = np.asarray(bounds[1:])
    hi_vals[-1] = max_gray
    hi_idx = np.searchsorted(sorted_vals, hi_vals, side="right")

    big = np.iinfo(np.int64).max
    num_intervals = len(bounds) - 1
    # Stats pushed up from nested regions of higher intervals into their parent:
    # count, first, last, xmin, xmax (first / last are row-major pixel indices).
    nested = [None] * num_intervals
    rows = []
    for j in range(num_intervals - 1, -1, -1):
        a, b = bounds[j], bounds[j + 1]
        n, lab, y0, x0 = label(a)
        if nested[j] is None:
            nested[j] = np.array([[0, big, -1, big, -1]] * n, np.int64).reshape(n, 5)
        ca = nested[j]
        # This interval's own pixels: gray values vmin .. vmax.
        vmin = a + 1
        vmax = b if j < num_intervals - 1 else max_gray
        nv = vmax - vmin + 1
        pix = order[lo_idx[j]:hi_idx[j]]
        ys, xs = np.divmod(pix, width)
        node = lab[ys - y0, xs - x0].astype(np.int64) - 1
        key = node * nv + (sorted_vals[lo_idx[j]:hi_idx[j]].astype(np.int64) - vmin)
        size = n * nv
        cnt = np.bincount(key, minlength=size).reshape(n, nv)
        stats = []
        for ufunc, init, vals in ((np.minimum, big, pix), (np.maximum, -1, pix),
                                  (np.minimum, big, xs), (np.maximum, -1, xs)):
            arr = np.full(size, init, np.int64)
            ufunc.at(arr, key, vals)
            # Suffix over gray values (pixels with value >= v), then add nested regions.
            arr = ufunc.accumulate(arr.reshape(n, nv)[:, ::-1], axis=1)[:, ::-1]
            stats.append(arr)
        s_cnt = np.cumsum(cnt[:, ::-1], axis=1)[:, ::-1] + ca[:, 0:1]
        s_first = np.minimum(stats[0], ca[:, 1:2])
        s_last = np.maximum(stats[1], ca[:, 2:3])
        s_xmin = np.minimum(stats[2], ca[:, 3:4])
        s_xmax = np.maximum(stats[3], ca[:, 4:5])
        # Levels a .. b-1 (or .. top): pixels with value > L, i.e. column L + 1 - vmin.
        lv = np.arange(a, b)
        col = lv + 1 - vmin
        c = s_cnt[:, col]
        present = c > 0
        ni, li = np.nonzero(present)
        f = s_first[ni, col[li]]
        box = np.stack([s_xmin[ni, col[li]], f // width, s_xmax[ni, col[li]],
                        s_last[ni, col[li]] // width], axis=1)
        rows.append((lv[li], c[ni, li], box, f))
        if j > 0:
            # Push this interval's full regions (value >= vmin) into their parents.
            tot = np.stack([s_cnt[:, 0], s_first[:, 0], s_last[:, 0], s_xmin[:, 0],
                            s_xmax[:, 0]], axis=1)
            tot = tot[tot[:, 0] > 0]
            _, plab, py0, px0 = label(bounds[j - 1])
            fy, fx = np.divmod(tot[:, 1], width)
            parent = plab[fy - py0, fx - px0].astype(np.int64) - 1
            pn = cache[bounds[j - 1]][0]
            pc = np.array([[0, big, -1, big, -1]] * pn, np.int64).reshape(pn, 5)
            np.add.at(pc[:, 0], parent, tot[:, 0])
            np.minimum.at(pc[:, 1], parent, tot[:, 1])
            np.maximum.at(pc[:, 2], parent, tot[:, 2])
            np.minimum.at(pc[:, 3], parent, tot[:, 3])
            np.maximum.at(pc[:, 4], parent, tot[:, 4])
            nested[j - 1] = pc
    rows.reverse()
    return _table_from_rows(rows, max_gray)


def component_table(gray):
    """All 8-connected regions of ``gray > L`` for every level ``L < max(gray)``.

    Args:
        gray: uint8 ``[H, W]`` quantised map (:func:`quantize_cams`).

    Returns:
        A :class:`ComponentTable`.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"gray: expected a uint8 [H, W] map, received {gray.dtype} "
                         f"{gray.shape}")
    return _component_table_fast(gray)


def wsol_boxes_per_level(gray, levels, multi_contour=False):
    """wsolevaluation's boxes at each distinct level (one findContours per level).

    Returns:
        dict level -> ``[4]`` box (or ``[N, 4]`` boxes with ``multi_contour=True``).
    """
    return {int(lv): boxes_at_level(gray, int(lv), multi_contour, "wsolevaluation")
            for lv in np.unique(np.asarray(levels))}
