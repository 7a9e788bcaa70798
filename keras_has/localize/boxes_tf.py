"""The single-region box rule in plain TensorFlow ops: the in-graph twin of
`keras_has.localize.boxes` (which is NumPy / OpenCV), run inside exported SavedModels.

The rule (docs/architecture.md, `keras_has.localize.boxes.boxes_from_cams`): the CAM is
upsampled bilinearly to the model input size (`resize_cams_tf`), min-max normalised
(`normalize_cams_tf`), quantised to `gray = floor(cam * 255)`, thresholded at
`gray > floor(threshold * max(gray))`; the 8-connected component with the most pixels
(ties: the one whose first pixel in row-major order comes first) gives the tight
inclusive box (`largest_region_boxes`); no foreground gives `(0, 0, 0, 0)`.
`rescale_boxes` maps such a box to the frame of an image of another size: model pixel
column `x` covers input columns `[x * W0 / W, (x + 1) * W0 / W)`, so
`x0' = floor(x0 * W0 / W)`, `x1' = ceil((x1 + 1) * W0 / W) - 1` (and likewise for y).

Connected components (`connected_component_labels`): the masks are cut into horizontal
runs, runs of consecutive rows that touch are joined by edges found with binary
searches, and the components of that small graph come from hooking and pointer
jumping, whose iteration count grows with the log of the graph's size (not with the
length of a snake-like region). Boxes are `x0, y0, x1, y1` inclusive pixels.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from keras_has.localize.boxes import IVR_PERCENTILE, check_normalization

__all__ = ["normalize_cams_tf", "resize_cams_tf", "connected_component_labels",
           "largest_region_boxes", "largest_regions", "rescale_boxes"]


def normalize_cams_tf(cams: tf.Tensor, finite: tf.Tensor | None = None,
                      normalization: str = "minmax",
                      percentile: float = IVR_PERCENTILE) -> tf.Tensor:
    """Per-map normalisation to [0, 1]; constant, NaN or inf maps become zeros: the
    in-graph twin of `keras_has.localize.boxes.normalize_cams` (same rules and values).

    Args:
        cams: float `[N, H, W]`.
        finite: optional bool `[N]`, whether each map is finite (e.g. checked on the
            small map before upsampling, which keeps finiteness); computed if None.
        normalization: `minmax` (`(x - min) / (max - min)`), `max` (`max(x, 0) / max`)
            or `ivr` (`max(x - q, 0) / (max - q)`, `q` the `percentile` order statistic
            `sorted(x)[int(n * percentile)]` of the map's `n` pixels).
        percentile: IVR's fraction in [0, 1).

    Returns:
        float32 `[N, H, W]`.
    """
    check_normalization(normalization, percentile)
    cams = tf.cast(cams, tf.float32)
    if finite is None:
        finite = tf.reduce_all(tf.math.is_finite(cams), axis=[1, 2])
    finite = tf.reshape(finite, [-1, 1, 1])
    safe = tf.where(finite, cams, 0.0)
    high = tf.reduce_max(safe, axis=[1, 2], keepdims=True)
    lowest = tf.reduce_min(safe, axis=[1, 2], keepdims=True)
    if normalization == "minmax":
        low = lowest
    elif normalization == "max":
        low = tf.zeros_like(high)
    else:
        shape = tf.shape(safe)
        flat = tf.sort(tf.reshape(safe, [shape[0], -1]), axis=1)
        k = tf.cast(tf.cast(shape[1] * shape[2], tf.float64) * percentile, tf.int32)
        low = tf.reshape(tf.gather(flat, k, axis=1), [-1, 1, 1])
    span = high - low
    valid = tf.logical_and(tf.logical_and(finite, span > 0), lowest < high)
    out = tf.where(valid, (safe - low) / tf.where(valid, span, 1.0), 0.0)
    return tf.clip_by_value(out, 0.0, 1.0)


def resize_cams_tf(cams: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Bilinear resizing of `[N, h, w]` maps to `[N, H, W]` (half-pixel centres)."""
    resized = tf.image.resize(tf.cast(cams, tf.float32)[..., None], size, method="bilinear")
    return resized[..., 0]


def _row_runs(foreground: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Horizontal runs of foreground pixels, as sorted flat keys.

    The `[N, H, W]` mask is laid out row after row with one background column appended
    to each row, so runs never cross rows and the key `(n * H + y) * (W + 1) + x` of a
    pixel grows in row-major order over the whole batch.

    Returns:
        `(starts, ends)` int64 `[R]`: keys of each run's first and last pixel, sorted.
    """
    padded = tf.reshape(tf.pad(foreground, [[0, 0], [0, 0], [0, 1]]), [-1])
    before = tf.concat([[False], padded[:-1]], axis=0)
    after = tf.concat([padded[1:], [False]], axis=0)
    starts = tf.where(tf.logical_and(padded, tf.logical_not(before)))[:, 0]
    ends = tf.where(tf.logical_and(padded, tf.logical_not(after)))[:, 0]
    return starts, ends


def _run_graph(starts, ends, height, width):
    """Edges joining runs of consecutive rows that touch (8-connectivity).

    A run `[x0, x1]` in row `y` touches the runs of row `y - 1` that overlap
    `[x0 - 1, x1 + 1]`; in the sorted keys those are one index range `first..last`
    (two binary searches). Edges: (run, first), and (j, j + 1) for every `j` in
    `first..last - 1` (marked by a difference array), so every touching pair is
    connected with at most 2 edges per run.

    Returns:
        `(u, v)` int32 edge endpoints, and per run: global row `n * H + y` (int64),
        `x0`, `x1` (int64).
    """
    stride = tf.cast(width + 1, tf.int64)
    row = starts // stride
    x0 = starts - row * stride
    x1 = ends - row * stride
    above = (row - 1) * stride
    low = above + tf.maximum(x0 - 1, 0)
    high = above + tf.minimum(x1 + 1, stride - 2)
    first = tf.searchsorted(ends, low, side="left", out_type=tf.int32)
    last = tf.searchsorted(starts, high, side="right", out_type=tf.int32) - 1
    touching = tf.logical_and(first <= last, row % tf.cast(height, tf.int64) != 0)
    num_runs = tf.size(starts)
    lower = tf.boolean_mask(tf.range(num_runs), touching)
    first = tf.boolean_mask(first, touching)
    last = tf.boolean_mask(last, touching)
    marks = tf.math.unsorted_segment_sum(
        tf.concat([tf.ones_like(first), -tf.ones_like(last)], axis=0),
        tf.concat([first, last], axis=0),
        num_runs + 1,
    )
    chained = tf.cast(tf.where(tf.cumsum(marks)[:num_runs] > 0)[:, 0], tf.int32)
    u = tf.concat([lower, chained], axis=0)
    v = tf.concat([first, chained + 1], axis=0)
    return u, v, row, x0, x1


def _graph_components(num_nodes, u, v, pointer_jumps: int = 2):
    """Smallest node index of each node's connected component, and the iteration count.

    Every node starts as its own label; each iteration hooks the label of each edge end
    onto the other end's label if smaller (a scatter-min, so whole trees merge at once),
    then jumps pointers `label = label[label]`. Labels only decrease and always name a
    node of the same component, so the loop stops at the component minimum.
    """
    labels = tf.range(num_nodes, dtype=tf.int32)

    def body(iteration, labels, _):
        label_u = tf.gather(labels, u)
        label_v = tf.gather(labels, v)
        hooked = tf.math.unsorted_segment_min(
            tf.concat([label_v, label_u], axis=0), tf.concat([label_u, label_v], axis=0), num_nodes
        )
        new = tf.minimum(labels, hooked)
        for _ in range(pointer_jumps):
            new = tf.gather(new, new)
        return iteration + 1, new, tf.reduce_any(tf.not_equal(new, labels))

    iterations, labels, _ = tf.while_loop(
        lambda iteration, labels, changed: changed,
        body,
        (tf.constant(0), labels, tf.size(u) > 0),
    )
    return labels, iterations


def _run_components(foreground):
    """Runs of `[N, H, W]` bool masks with their 8-connected component labels.

    Returns a dict of `[R]` int32 arrays: `image`, `row` (y), `x0`, `x1` and `label`
    (index of the component's first run = the run holding its first pixel in row-major
    order), plus `iterations`.
    """
    foreground = tf.convert_to_tensor(foreground, tf.bool)
    height, width = tf.shape(foreground)[1], tf.shape(foreground)[2]
    starts, ends = _row_runs(foreground)
    u, v, row, x0, x1 = _run_graph(starts, ends, height, width)
    labels, iterations = _graph_components(tf.size(starts), u, v)
    height64 = tf.cast(height, tf.int64)
    return {
        "image": tf.cast(row // height64, tf.int32),
        "row": tf.cast(row % height64, tf.int32),
        "x0": tf.cast(x0, tf.int32),
        "x1": tf.cast(x1, tf.int32),
        "label": labels,
        "iterations": iterations,
    }


def connected_component_labels(foreground: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """8-connected component labels of a batch of binary masks, in TensorFlow ops.

    Each foreground pixel is labelled with the row-major index (within its own image)
    of the first pixel of its component; background pixels get `H * W`.

    Algorithm: the masks are cut into horizontal runs (two `tf.where` over the pixels);
    runs of consecutive rows that touch are joined by edges found with binary searches;
    the components of that small graph are found by hooking and pointer jumping (see
    `_graph_components`), whose iteration count grows with the log of the graph's size,
    not with the length of a snake-like region (a 224x224 serpentine or spiral: 5-8).

    Args:
        foreground: bool `[N, H, W]`.

    Returns:
        `(labels int32 [N, H, W], iterations int32 scalar)`.
    """
    foreground = tf.convert_to_tensor(foreground, tf.bool)
    shape = tf.shape(foreground)
    height, width = shape[1], shape[2]
    runs = _run_components(foreground)
    first_pixel = runs["row"] * width + runs["x0"]
    padded = tf.reshape(tf.pad(foreground, [[0, 0], [0, 0], [0, 1]]), [-1])
    before = tf.concat([[False], padded[:-1]], axis=0)
    run_of_pixel = tf.cumsum(tf.cast(tf.logical_and(padded, tf.logical_not(before)), tf.int32)) - 1
    pixel = tf.gather(tf.gather(first_pixel, runs["label"]), tf.maximum(run_of_pixel, 0))
    pixel = tf.where(padded, pixel, height * width)
    labels = tf.reshape(pixel, [shape[0], height, width + 1])[:, :, :width]
    return labels, runs["iterations"]


def largest_region_boxes(cams: tf.Tensor, threshold: float) -> tf.Tensor:
    """Boxes of the largest connected region of thresholded CAMs, in TensorFlow ops.

    The single-region rule of `keras_has.localize.boxes.boxes_from_cams` (see the module
    docstring), for maps already min-max normalised to [0, 1] at the resolution where
    the box is wanted. Region sizes and boxes come from the runs of
    `connected_component_labels`' algorithm, without labelling pixels.

    Args:
        cams: float `[N, H, W]` in [0, 1].
        threshold: fraction of each map's maximum gray level, in [0, 1].

    Returns:
        int32 `[N, 4]` boxes `x0, y0, x1, y1`, inclusive pixels; `(0, 0, 0, 0)` where a
        map has no foreground.
    """
    return largest_regions(cams, threshold)[0]


def largest_regions(cams: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """`largest_region_boxes` and whether each map has foreground.

    Returns:
        `(boxes, found)`: int32 `[N, 4]` as `largest_region_boxes`, and bool `[N]`,
        whether each map has foreground.
    """
    cams = tf.convert_to_tensor(cams, tf.float32)
    gray = tf.floor(cams * 255.0)
    max_gray = tf.reduce_max(gray, axis=[1, 2], keepdims=True)
    # The level in float64, as NumPy / OpenCV compute it; an integer <= 255, so the
    # comparison itself is exact in float32.
    level = tf.floor(tf.constant(float(threshold), tf.float64) * tf.cast(max_gray, tf.float64))
    foreground = gray > tf.cast(level, tf.float32)
    count = tf.shape(cams)[0]
    runs = _run_components(foreground)
    image, label = runs["image"], runs["label"]
    num_runs = tf.size(label)
    index = tf.range(num_runs)
    sizes = tf.math.unsorted_segment_sum(runs["x1"] - runs["x0"] + 1, label, num_runs)
    # The largest region per image; ties go to the smallest label (first pixel first).
    best_size = tf.math.unsorted_segment_max(sizes, image, count)
    is_best = tf.logical_and(tf.equal(label, index), tf.equal(sizes, tf.gather(best_size, image)))
    best = tf.math.unsorted_segment_min(tf.where(is_best, index, num_runs), image, count)
    member = tf.equal(label, tf.gather(best, image))
    largest, smallest = tf.int32.max, -1
    boxes = tf.stack(
        [
            tf.math.unsorted_segment_min(tf.where(member, runs["x0"], largest), image, count),
            tf.math.unsorted_segment_min(tf.where(member, runs["row"], largest), image, count),
            tf.math.unsorted_segment_max(tf.where(member, runs["x1"], smallest), image, count),
            tf.math.unsorted_segment_max(tf.where(member, runs["row"], smallest), image, count),
        ],
        axis=1,
    )
    found = tf.math.unsorted_segment_max(tf.ones_like(image), image, count) > 0
    return tf.where(found[:, None], boxes, 0), found


def rescale_boxes(boxes: tf.Tensor, from_size: Sequence[int], to_sizes: tf.Tensor) -> tf.Tensor:
    """Maps inclusive pixel boxes from a `(H, W)` frame to each image's own frame.

    Args:
        boxes: int `[N, 4]` `x0, y0, x1, y1` inclusive in the `from_size` frame.
        from_size: `(H, W)` of the frame the boxes are in.
        to_sizes: int `[N, 2]` `(height, width)` of each target image.

    Returns:
        int32 `[N, 4]`: `x0' = floor(x0 * W0 / W)`, `x1' = ceil((x1 + 1) * W0 / W) - 1`,
        likewise for y, clipped to the image.
    """
    boxes = tf.cast(boxes, tf.int64)
    to_sizes = tf.cast(to_sizes, tf.int64)
    height, width = int(from_size[0]), int(from_size[1])
    scale = tf.stack([to_sizes[:, 1], to_sizes[:, 0]], axis=1)  # (W0, H0)
    scale = tf.concat([scale, scale], axis=1)
    source = tf.constant([width, height, width, height], tf.int64)
    starts = boxes[:, :2] * scale[:, :2] // source[:2]
    ends = ((boxes[:, 2:] + 1) * scale[:, 2:] + source[2:] - 1) // source[2:] - 1
    limits = scale[:, :2] - 1
    starts = tf.clip_by_value(starts, 0, tf.maximum(limits, 0))
    ends = tf.clip_by_value(ends, starts, tf.maximum(limits, 0))
    return tf.cast(tf.concat([starts, ends], axis=1), tf.int32)
