"""SavedModel export with serving signatures: an image in; class, score, box and CAM out.

The exported SavedModel is a complete localizer that loads with `tf.saved_model.load`
in any TensorFlow program (no keras_has, no Keras needed) and serves under TensorFlow
Serving. Two signatures share one graph:

- `serving_default(images_bytes)`: `tf.string [N]`, each a JPEG or PNG of any size.
- `serving_images(images)`: `uint8 [N, H, W, 3]` RGB pixels.

Both decode, resize to the training image size (bilinear, antialiased, as the
evaluation pipeline does), preprocess exactly as in training (the run's
`keras_has.preprocessing.Preprocessing`: per-channel mean and std after an optional
RGB -> BGR reversal, stored in the graph and in `assets/preprocessing.json`), run the
model once for logits and CAM features, and return, per image:

- `classes` int32 `[N, k]` and `scores` float32 `[N, k]`: softmax top-k, best first;
- `class_names` string `[N, k]`: the names of `classes`;
- `boxes` int32 `[N, 4]`: `x0, y0, x1, y1` inclusive, in pixels of each INPUT image;
- `boxes_normalized` float32 `[N, 4]`: the same box as fractions of the image's width and
  height, pixel edges: `(x0 / W, y0 / H, (x1 + 1) / W, (y1 + 1) / H)` in the model frame;
  multiplying by any image size gives the box edges in that image;
- `cams` float32 `[N, h, w]`: the top class's raw CAM at feature resolution;
- `image_sizes` int32 `[N, 2]`: `(height, width)` of each input image.

The box is the library's single-region rule (docs/architecture.md,
`keras_has.localization.boxes_from_cams`) written in plain TensorFlow ops: the CAM is
upsampled bilinearly to the model input size, min-max normalised, quantised to
`gray = floor(cam * 255)`, thresholded at `gray > floor(threshold * max(gray))`; the
8-connected component with the most pixels (ties: the one whose first pixel in row-major
order comes first) gives the tight inclusive box; no foreground gives `(0, 0, 0, 0)`.
In the input image's frame, model pixel column `x` covers input columns
`[x * W0 / W, (x + 1) * W0 / W)`, so a box maps to
`x0' = floor(x0 * W0 / W)`, `x1' = ceil((x1 + 1) * W0 / W) - 1` (and likewise for y).

Evaluation signature (on by default; `export_saved_model(..., cam_signature=False)` leaves it out):

- `cam_features(images)`: float32 `[N, S, S, 3]`, images already resized to the model
  size and normalised with `mean` / `std` (what `keras_has.data.make_eval_dataset`
  yields). Returns `logits` float32 `[N, K]` and `class_cams` float32 `[N, h, w, K]`:
  the raw CAM of every class at feature resolution, `features @ kernel` with the
  classifier bias excluded (`keras_has.cam` semantics for all classes at once). It lets
  `keras_has.evaluation.SavedModelCamSource` score ground-truth-class CAMs of an export.
  All class maps rather than `features` plus the kernel: one self-contained output with
  no batch-less constant, and smaller whenever `K <= C` (every model here). On by
  default so that every export can be evaluated (`scripts/evaluate.py`); serving
  clients use `serving_default` and never see it unless they ask for it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from keras_has.io_utils import staging_dir

SERVING_DEFAULT = "serving_default"
SERVING_IMAGES = "serving_images"
CAM_FEATURES = "cam_features"
CAM_FEATURES_KEYS = ("logits", "class_cams")
OUTPUT_KEYS = (
    "classes",
    "scores",
    "class_names",
    "boxes",
    "boxes_normalized",
    "cams",
    "image_sizes",
)
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# CAM -> box, in plain TensorFlow ops (runs inside the SavedModel).
# ---------------------------------------------------------------------------


def normalize_cams_tf(cams: tf.Tensor, finite: tf.Tensor | None = None) -> tf.Tensor:
    """Per-map min-max normalisation to [0, 1]; constant, NaN or inf maps become zeros.

    Args:
        cams: float `[N, H, W]`.
        finite: optional bool `[N]`, whether each map is finite (e.g. checked on the
            small map before upsampling, which keeps finiteness); computed if None.

    Returns:
        float32 `[N, H, W]`.
    """
    cams = tf.cast(cams, tf.float32)
    if finite is None:
        finite = tf.reduce_all(tf.math.is_finite(cams), axis=[1, 2])
    finite = tf.reshape(finite, [-1, 1, 1])
    safe = tf.where(finite, cams, 0.0)
    low = tf.reduce_min(safe, axis=[1, 2], keepdims=True)
    span = tf.reduce_max(safe, axis=[1, 2], keepdims=True) - low
    valid = tf.logical_and(finite, span > 0)
    return tf.where(valid, (safe - low) / tf.where(valid, span, 1.0), 0.0)


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

    The single-region rule of `keras_has.localization.boxes_from_cams` (see the module
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
    return _largest_regions(cams, threshold)[0]


def _largest_regions(cams: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
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


# ---------------------------------------------------------------------------
# The serving functions.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Validated export settings (what `preprocessing.json` records).

    Args:
        image_size: `(height, width)` the model takes.
        mean: per-channel mean in [0, 255] pixel scale (3 floats).
        std: per-channel std in [0, 255] pixel scale (3 positive floats).
        class_names: one name per class.
        cam_threshold: CAM threshold as a fraction of the max, in [0, 1].
        top_k: number of classes returned (capped at the number of classes).
        max_image_pixels: largest `height * width` accepted by `serving_default`.
        channel_order: `rgb` or `bgr`: the channel order the model sees (mean and std
            are in that order).
        preprocessing_mode: the `keras_has.preprocessing` mode the values come from.
    """

    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    cam_threshold: float
    top_k: int
    max_image_pixels: int
    channel_order: str = "rgb"
    preprocessing_mode: str = "dataset"

    @property
    def preprocessing(self):
        """The `keras_has.preprocessing.Preprocessing` the export applies."""
        from keras_has.preprocessing import Preprocessing

        return Preprocessing(self.preprocessing_mode, self.mean, self.std, self.channel_order)

    def to_json(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "preprocessing": self.preprocessing.to_json(),
            "cam_threshold": self.cam_threshold,
            "top_k": self.top_k,
            "max_image_pixels": self.max_image_pixels,
            "resize_method": "bilinear, antialias=True, clipped to [0, 255]",
            "normalization": (f"(pixel - mean) / std, pixel in [0, 255], "
                              f"{self.channel_order.upper()} channel order"),
            "box_convention": "x0, y0, x1, y1 inclusive pixels of the input image",
        }


def _as_image_size(image_size: Any) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"image_size: expected an int or a (height, width) pair of positive ints, "
                f"received {image_size!r}"
            ) from None
        if len(size) != 2 or any(float(v) != float(o) for v, o in zip(size, image_size)):
            raise ValueError(
                f"image_size: expected an int or a (height, width) pair of positive ints, "
                f"received {image_size!r}"
            )
    if min(size) < 1:
        raise ValueError(f"image_size: expected positive sizes, received {image_size!r}")
    return size


def _as_triple(name: str, values: Any, positive: bool) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected 3 per-channel floats in [0, 255] pixel scale, "
            f"received {values!r}"
        ) from None
    if len(triple) != 3 or not all(np.isfinite(triple)):
        raise ValueError(
            f"{name}: expected 3 finite per-channel floats in [0, 255] pixel scale, "
            f"received {values!r}"
        )
    if positive and min(triple) <= 0:
        raise ValueError(f"{name}: expected 3 positive floats, received {values!r}")
    return triple


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_model(model) -> tuple[int, tuple[int, ...]]:
    """Returns (num_classes, model input shape) after checking the layer contract."""
    names = {layer.name for layer in getattr(model, "layers", [])}
    missing = [name for name in ("cam_features", "classifier") if name not in names]
    if missing:
        raise ValueError(
            f"model: expected a keras_has model with layers named 'cam_features' and "
            f"'classifier' (docs/architecture.md), received {getattr(model, 'name', model)!r} "
            f"without {missing}"
        )
    kernel = model.get_layer("classifier").kernel
    input_shape = tuple(model.inputs[0].shape)
    return int(kernel.shape[-1]), input_shape


def make_serving_config(
    model,
    *,
    image_size,
    mean=None,
    std=None,
    class_names=None,
    cam_threshold: float = 0.2,
    top_k: int = 5,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    preprocessing=None,
) -> ServingConfig:
    """Checks every export argument against the model; raises ValueError naming it.

    The input preprocessing is either `preprocessing` (a
    `keras_has.preprocessing.Preprocessing`, e.g. the training run's) or `mean` / `std`
    (RGB dataset statistics), not both.
    """
    mode, order = "dataset", "rgb"
    if preprocessing is not None:
        if mean is not None or std is not None:
            raise ValueError("preprocessing: pass either preprocessing or mean/std, not both")
        mean, std = preprocessing.mean, preprocessing.std
        mode, order = preprocessing.mode, preprocessing.channel_order
    if mean is None or std is None:
        raise ValueError("mean/std: expected the preprocessing (or mean and std), received none")
    num_classes, input_shape = _check_model(model)
    size = _as_image_size(image_size)
    if len(input_shape) != 4 or input_shape[-1] != 3:
        raise ValueError(
            f"model: expected an input of shape [B, H, W, 3], received {input_shape}"
        )
    fixed = tuple(input_shape[1:3])
    if any(v is not None for v in fixed) and fixed != size:
        raise ValueError(
            f"image_size: the model takes inputs of size {fixed}, received image_size={size}"
        )
    if class_names is None:
        names = tuple(str(i) for i in range(num_classes))
    else:
        names = tuple(str(name) for name in class_names)
        if len(names) != num_classes:
            raise ValueError(
                f"class_names: expected {num_classes} names (the classifier's classes), "
                f"received {len(names)}"
            )
        bad = [name for name in names if not name or "\n" in name]
        if bad:
            raise ValueError(
                f"class_names: names must be non-empty single lines, received {bad[:3]}"
            )
    threshold = float(cam_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(
            f"cam_threshold: expected a fraction in [0, 1], received {cam_threshold!r}"
        )
    if not _is_positive_int(top_k):
        raise ValueError(f"top_k: expected a positive int, received {top_k!r}")
    if not _is_positive_int(max_image_pixels):
        raise ValueError(
            f"max_image_pixels: expected a positive int, received {max_image_pixels!r}"
        )
    return ServingConfig(
        image_size=size,
        mean=_as_triple("mean", mean, positive=False),
        std=_as_triple("std", std, positive=True),
        class_names=names,
        cam_threshold=threshold,
        top_k=min(int(top_k), num_classes),
        max_image_pixels=int(max_image_pixels),
        channel_order=order,
        preprocessing_mode=mode,
    )


def resize_images(images: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Resizes uint8 images to `size` as the evaluation pipeline does.

    Bilinear with antialiasing, clipped to [0, 255]: the same ops as
    `keras_has.data.pipeline` applies before normalisation, so served inputs match the
    inputs the model was evaluated on. Images already of `size` are passed through
    (that resizing is the identity there; skipping it saves ~4 ms at 224x224).

    Args:
        images: uint8 or float `[H, W, 3]` or `[N, H, W, 3]` in [0, 255].
        size: `(height, width)`.

    Returns:
        float32 of the same rank, spatial size `size`, in [0, 255].
    """
    images = tf.convert_to_tensor(images)
    same_size = tf.reduce_all(tf.equal(tf.shape(images)[-3:-1], tf.constant(size, tf.int32)))

    def resize():
        resized = tf.image.resize(images, size, method="bilinear", antialias=True)
        return tf.clip_by_value(resized, 0.0, 255.0)

    def keep():  # antialiased bilinear resizing at scale 1 is the identity
        return tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)

    return tf.cond(same_size, keep, resize)


def _image_dims_from_header(data: tf.Tensor) -> tf.Tensor:
    """`(height, width)` int64 read from a JPEG or PNG header without decoding."""
    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC)

    def png_dims():
        # IHDR: width and height are big-endian uint32 at bytes 16..24.
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.uint8), tf.int64)
        raw = tf.concat([raw, tf.zeros([8], tf.int64)], axis=0)[:8]
        weights = tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64)
        width = tf.reduce_sum(raw[:4] * weights)
        height = tf.reduce_sum(raw[4:] * weights)
        return tf.stack([height, width])

    def jpeg_dims():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    return tf.cond(is_png, png_dims, jpeg_dims)


class ServingFunctions:
    """The two serving tf.functions for one model and its preprocessing values.

    Usable in memory (e.g. by scripts/predict.py on a `.keras` model) and exported by
    `export_saved_model`.

    Args:
        model: a built keras_has model (layers `cam_features` and `classifier`).
        config: a `ServingConfig` (see `make_serving_config`).

    Attributes:
        serving_default: tf.function, `images_bytes` string `[N]` -> outputs dict.
        serving_images: tf.function, `images` uint8 `[N, H, W, 3]` -> outputs dict.
        cam_features: tf.function, normalised `images` float32 `[N, S, S, 3]` ->
            `{"logits": [N, K], "class_cams": [N, h, w, K]}` (float32).
        cam_model: the `(logits, features)` model the functions call.
    """

    def __init__(self, model, config: ServingConfig):
        from keras_has.cam import cam_rule

        self.config = config
        # The model's CAM rule (its method's when the model records one): one path for
        # evaluation, callbacks and serving.
        self._rule = cam_rule(model)
        self.cam_model = self._rule.cam_model
        size = config.image_size
        self._reverse = config.channel_order == "bgr"
        self._mean = tf.constant(config.mean, tf.float32)
        self._std = tf.constant(config.std, tf.float32)
        self._names = tf.constant(list(config.class_names))
        self._max_pixels = tf.constant(config.max_image_pixels, tf.int64)

        def decode_one(data):
            has_magic = tf.logical_or(
                tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC),
                tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC),
            )
            check = tf.debugging.Assert(
                has_magic,
                [
                    "images_bytes: expected JPEG or PNG bytes; received",
                    tf.strings.length(data),
                    "bytes starting with",
                    tf.strings.substr(data, 0, 8),
                ],
            )
            with tf.control_dependencies([check]):
                dims = _image_dims_from_header(data)
            pixels = dims[0] * dims[1]
            size_check = tf.debugging.Assert(
                tf.logical_and(pixels <= self._max_pixels, pixels > 0),
                [
                    "images_bytes: expected an image of at most",
                    self._max_pixels,
                    "pixels; received height, width",
                    dims,
                ],
            )
            with tf.control_dependencies([size_check]):
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
            image.set_shape([None, None, 3])
            return resize_images(image, size), tf.shape(image, out_type=tf.int32)[:2]

        def from_bytes(images_bytes):
            resized, sizes = tf.map_fn(
                decode_one,
                images_bytes,
                fn_output_signature=(
                    tf.TensorSpec([size[0], size[1], 3], tf.float32),
                    tf.TensorSpec([2], tf.int32),
                ),
            )
            return self._predict(resized, sizes)

        def from_images(images):
            shape = tf.shape(images)
            check = tf.debugging.Assert(
                tf.logical_and(shape[1] > 0, shape[2] > 0),
                ["images: expected a non-empty [N, H, W, 3] uint8 batch; received shape", shape],
            )
            with tf.control_dependencies([check]):
                resized = resize_images(images, size)
            sizes = tf.tile(shape[None, 1:3], [shape[0], 1])
            return self._predict(resized, sizes)

        self.serving_default = tf.function(
            from_bytes,
            autograph=False,
            input_signature=[tf.TensorSpec([None], tf.string, name="images_bytes")],
        )
        self.serving_images = tf.function(
            from_images,
            autograph=False,
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
        )
        self.cam_features = tf.function(
            self._class_cams,
            autograph=False,
            input_signature=[tf.TensorSpec([None, size[0], size[1], 3], tf.float32, name="images")],
        )

    def _class_cams(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits, features = self._rule.forward(images, training=False)
        return {"logits": logits, "class_cams": self._rule.class_cams(features)}

    def _predict(self, resized: tf.Tensor, image_sizes: tf.Tensor) -> dict[str, tf.Tensor]:
        config = self.config
        if self._reverse:
            resized = tf.reverse(resized, axis=[-1])
        images = (resized - self._mean) / self._std
        # Convolutions reject empty batches; run one blank image then and drop it.
        count = tf.shape(images)[0]
        blank = tf.zeros([1, *config.image_size, 3], tf.float32)
        images = tf.cond(count > 0, lambda: images, lambda: blank)
        logits, features = self._rule.forward(images, training=False)
        logits = logits[:count]
        features = [f[:count] for f in features]
        scores, classes = tf.math.top_k(tf.nn.softmax(logits, axis=-1), k=config.top_k)
        cams = self._rule.cams(features, classes[:, 0])
        finite = tf.reduce_all(tf.math.is_finite(cams), axis=[1, 2])  # on the small maps
        maps = normalize_cams_tf(resize_cams_tf(cams, config.image_size), finite)
        boxes, found = _largest_regions(maps, config.cam_threshold)
        height, width = config.image_size
        edges = tf.cast(tf.concat([boxes[:, :2], boxes[:, 2:] + 1], axis=1), tf.float32)
        normalized = edges / tf.constant([width, height, width, height], tf.float32)
        normalized = tf.where(found[:, None], normalized, 0.0)
        original = tf.where(found[:, None], rescale_boxes(boxes, config.image_size, image_sizes), 0)
        return {
            "classes": classes,
            "scores": scores,
            "class_names": tf.gather(self._names, classes),
            "boxes": original,
            "boxes_normalized": normalized,
            "cams": cams,
            "image_sizes": tf.cast(image_sizes, tf.int32),
        }


# ---------------------------------------------------------------------------
# Export.
# ---------------------------------------------------------------------------


def _config_to_json(config: Any) -> str:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    elif hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise ValueError(
            f"config: expected a dict or a dataclass instance, received {type(config).__name__}"
        )
    return json.dumps(config, indent=2, sort_keys=True, default=str)


def read_class_names(path) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines at the end ignored)."""
    path = pathlib.Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"class_names: cannot read {path}: {error.strerror}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if not lines or empty:
        raise ValueError(
            f"{path}: expected one non-empty class name per line, "
            f"received {'no names' if not lines else f'empty line(s) {empty[:5]}'}"
        )
    return tuple(line.strip() for line in lines)


def read_preprocessing(export_dir) -> dict:
    """An export's `assets/preprocessing.json` (image_size, mean, std, cam_threshold...).

    Raises:
        ValueError naming the file when it is missing, not JSON or lacks a key.
    """
    path = pathlib.Path(export_dir) / "assets" / "preprocessing.json"
    try:
        prep = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the export's preprocessing JSON: {error}") from None
    missing = [k for k in ("image_size", "mean", "std") if k not in prep]
    if missing:
        raise ValueError(f"{path}: expected keys image_size, mean, std; missing {missing}")
    return prep


def preprocessing_of(prep: dict, where="preprocessing.json"):
    """The `keras_has.preprocessing.Preprocessing` an export's `preprocessing.json`
    records (exports from before the record was added: dataset statistics, RGB)."""
    from keras_has.preprocessing import Preprocessing

    if isinstance(prep.get("preprocessing"), dict):
        return Preprocessing.from_json(prep["preprocessing"], where=str(where))
    return Preprocessing.from_json({"mode": "dataset", "mean": prep["mean"],
                                    "std": prep["std"],
                                    "channel_order": prep.get("channel_order", "rgb")},
                                   where=str(where))


def resolve_serving_settings(
    *,
    model_path=None,
    train_config=None,
    image_size=None,
    mean=None,
    std=None,
    class_names=None,
    source=None,
    split=None,
) -> dict:
    """Fills in the preprocessing values an export needs from a training run.

    Explicit values win. Otherwise `image_size` comes from the training config, and
    `mean`, `std` and the class names from its data source
    (`keras_has.data.get_normalization` over its training split, cached next to the data).

    Args:
        model_path: the `.keras` model; its run's `config.json` beside it is used when
            `train_config` is None and the file exists.
        train_config: path of a training run's `config.json` (`keras_has.training`
            writes it beside `model.keras`), a dict of it, or None.
        image_size: int or None.
        mean, std: 3 floats each, or None.
        class_names: a sequence of names, a path to a one-name-per-line file, or None.
        source: data source name or WSOL folder (default: the config's).
        split: split the normalisation was measured on (default: the config's
            training split, else "train").

    Returns:
        dict with `image_size`, `mean`, `std`, `class_names` (None if unknown),
        `config` (the training config dict or None) and `preprocessing` (the
        `Preprocessing` recorded in the run folder's `preprocessing.json` beside the
        model or the config, else dataset statistics from `mean` / `std`).

    Raises:
        ValueError naming what is missing and where it was looked for.
    """
    config = None
    run_dir = None
    if model_path is not None:
        run_dir = pathlib.Path(model_path).resolve().parent
    if train_config is None and model_path is not None:
        beside = pathlib.Path(model_path).resolve().parent / "config.json"
        train_config = beside if beside.is_file() else None
    if isinstance(train_config, (str, os.PathLike)) and run_dir is None:
        run_dir = pathlib.Path(train_config).resolve().parent
    recorded = None
    if run_dir is not None and mean is None and std is None:
        from keras_has.training import read_run_preprocessing

        recorded = read_run_preprocessing(run_dir)
        if recorded is not None:
            mean, std = recorded.mean, recorded.std
    if isinstance(train_config, (str, os.PathLike)):
        path = pathlib.Path(train_config)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"train_config: cannot read {path} as JSON: {error}") from None
    elif train_config is not None:
        config = dict(train_config)
    data_config = (config or {}).get("data") or {}
    if not isinstance(data_config, dict):
        raise ValueError(
            f"train_config: expected a 'data' section (a dict), received {data_config!r}"
        )
    if image_size is None:
        image_size = data_config.get("image_size")
        if image_size is None:
            raise ValueError("image_size: not given and no training config with data.image_size")
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_class_names(class_names)
    source = source or data_config.get("source")
    split = split or data_config.get("train_split") or "train"
    if (mean is None or std is None or class_names is None) and source:
        from keras_has import data

        kwargs = {}
        if source == data_config.get("source"):
            if data_config.get("data_dir"):
                kwargs["data_dir"] = data_config["data_dir"]
            if data_config.get("source_config"):
                kwargs["config"] = data_config["source_config"]
        data_source = data.get_source(source, **kwargs)
        if mean is None or std is None:
            source_mean, source_std = data.get_normalization(data_source, split=split)
            mean = source_mean if mean is None else mean
            std = source_std if std is None else std
        if class_names is None:
            class_names = getattr(data_source, "class_names", None)
    if mean is None or std is None:
        raise ValueError(
            "mean/std: not given, and no data source to measure them on "
            "(pass mean and std, or a source, or a training config.json)"
        )
    from keras_has.preprocessing import make_preprocessing

    mean, std = _as_triple("mean", mean, positive=False), _as_triple("std", std, positive=True)
    return {
        "image_size": image_size,
        "mean": mean,
        "std": std,
        "class_names": None if class_names is None else tuple(class_names),
        "config": config,
        "preprocessing": recorded if recorded is not None else make_preprocessing(
            "dataset", mean, std),
    }


def export_saved_model(
    model,
    export_dir,
    *,
    image_size,
    mean=None,
    std=None,
    class_names=None,
    cam_threshold: float = 0.2,
    top_k: int = 5,
    config: Any = None,
    overwrite: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    cam_signature: bool = True,
    preprocessing=None,
) -> pathlib.Path:
    """Exports `model` as a SavedModel localizer with serving signatures, atomically.

    See the module docstring for the signatures and outputs. The SavedModel is written
    to a temporary directory beside `export_dir` and renamed into place, so readers
    never see a partial export. Assets: `assets/class_names.txt` (one per line),
    `assets/preprocessing.json` (image_size, mean, std, cam_threshold, ...) and, if
    `config` is given, `assets/training_config.json`.

    Args:
        model: built keras_has model: layers `cam_features` ([B, h, w, C]) and a Dense
            `classifier` ([C, K]), input normalised float `[B, H, W, 3]`.
        export_dir: directory to create.
        image_size: int or `(height, width)` the model was trained at.
        mean, std: per-channel normalisation in [0, 255] pixel scale (3 floats each),
            RGB dataset statistics; or instead
        preprocessing: the training run's `keras_has.preprocessing.Preprocessing`
            (recorded in `assets/preprocessing.json`).
        class_names: K names; default `"0"`, ..., `"K-1"`.
        cam_threshold: fraction of each CAM's max, in [0, 1].
        top_k: classes returned per image (capped at K).
        config: training config (dict or dataclass) saved as JSON; optional.
        overwrite: replace an existing `export_dir`; otherwise that is an error.
        max_image_pixels: `serving_default` rejects larger images before decoding.
        cam_signature: add the `cam_features` evaluation signature (module
            docstring), which `scripts/evaluate.py` needs to evaluate the export.

    Returns:
        The export directory as a `pathlib.Path`.
    """
    export_dir = pathlib.Path(export_dir)
    if export_dir.exists() and not overwrite:
        raise FileExistsError(
            f"export_dir: {export_dir} already exists; pass overwrite=True to replace it"
        )
    serving_config = make_serving_config(
        model,
        image_size=image_size,
        mean=mean,
        std=std,
        class_names=class_names,
        cam_threshold=cam_threshold,
        top_k=top_k,
        max_image_pixels=max_image_pixels,
        preprocessing=preprocessing,
    )
    config_json = None if config is None else _config_to_json(config)
    functions = ServingFunctions(model, serving_config)

    import keras

    parent = export_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(staging_dir(parent, export_dir.name))
    try:
        saved = staging / "saved_model"
        archive = keras.export.ExportArchive()
        archive.track(functions.cam_model)
        endpoints = [
            (SERVING_DEFAULT, functions.serving_default),
            (SERVING_IMAGES, functions.serving_images),
        ]
        if cam_signature:
            endpoints.append((CAM_FEATURES, functions.cam_features))
        for name, function in endpoints:
            function.get_concrete_function()  # traced once, from its input_signature
            archive.add_endpoint(name, function)
        archive.write_out(str(saved), verbose=False)
        assets = saved / "assets"
        assets.mkdir(exist_ok=True)
        (assets / "class_names.txt").write_text(
            "".join(f"{name}\n" for name in serving_config.class_names), encoding="utf-8"
        )
        (assets / "preprocessing.json").write_text(
            json.dumps(serving_config.to_json(), indent=2) + "\n", encoding="utf-8"
        )
        if config_json is not None:
            (assets / "training_config.json").write_text(config_json + "\n", encoding="utf-8")
        if export_dir.exists():  # overwrite=True: swap, then delete the old export.
            old = staging / "old"
            os.replace(export_dir, old)
        os.replace(saved, export_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return export_dir
