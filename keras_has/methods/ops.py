"""The method-specific math of the WSOL methods, as pure TensorFlow functions.

Each function is graph-safe (usable in `tf.function`, `tf.data` and Keras layers), has
no hidden random state (randomness comes from an explicit stateless seed) and is
tested on hand-made tensors (`tests/test_methods.py`). The semantics are those of
clovaai/wsolevaluation's `wsol/method/` (see docs/design/methods.md for every
difference).

Shapes: feature maps and images are channels-last `[B, h, w, C]`; single-channel maps
(CAMs, attention) are `[B, h, w]`.
"""
from __future__ import annotations

import tensorflow as tf

__all__ = [
    "minmax_normalize",
    "acol_erase_mask",
    "spg_guidance_mask",
    "spg_min_fg_pixels",
    "masked_bce_with_logits",
    "adl_maps",
    "adl_select",
    "cutmix_box",
    "cutmix_batch",
    "stateless_beta",
]


def minmax_normalize(maps: tf.Tensor) -> tf.Tensor:
    """Per-map min-max normalisation of `[B, h, w]` (or `[B, h, w, K]`, each `[:, :, :, k]`
    separately) maps to [0, 1]; a constant map becomes 0 (wsolevaluation divides by
    `max - min` and gets NaN there)."""
    maps = tf.convert_to_tensor(maps)
    axes = [1, 2]
    low = tf.reduce_min(maps, axis=axes, keepdims=True)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    return tf.math.divide_no_nan(maps - low, high - low)


# ------------------------------------------------------------------------------ ACoL
def acol_erase_mask(cams: tf.Tensor, threshold: float) -> tf.Tensor:
    """ACoL's erasing mask (Zhang et al., CVPR 2018): 0 where the min-max normalised CAM
    is at least `threshold`, 1 elsewhere.

    Args:
      cams: float `[B, h, w]`, one class's raw activation map per image.
      threshold: fraction in [0, 1] (wsolevaluation's `acol_threshold`, default 0.7).

    Returns:
      `[B, h, w]` of the input dtype, values in {0, 1}; features times the mask
      (broadcast over channels) are the erased features branch B sees.
    """
    cams = tf.convert_to_tensor(cams)
    normalized = minmax_normalize(tf.cast(cams, tf.float32))
    return tf.cast(normalized < threshold, cams.dtype)


# ------------------------------------------------------------------------------- SPG
def spg_min_fg_pixels(height: int, width: int) -> int:
    """wsolevaluation's SPG falls back to `0.7 * max` when fewer than 30 pixels of its
    224 x 224 map are foreground; at other sizes the count scales with the area."""
    return max(1, int(round(30.0 * height * width / (224.0 * 224.0))))


def spg_guidance_mask(attention: tf.Tensor, high: float, low: float,
                      min_fg_pixels: int = 30) -> tuple[tf.Tensor, tf.Tensor]:
    """SPG's self-produced guidance (Zhang et al., ECCV 2018): foreground, background and
    ignored pixels of an attention map.

    Per image: foreground where `attention > high` (when that gives fewer than
    `min_fg_pixels` pixels, where `attention > 0.7 * max(attention)` instead),
    background where `attention < low` (background wins where both hold); every other
    pixel is ignored.

    Args:
      attention: float `[B, H, W]` maps in [0, 1].
      high, low: thresholds in [0, 1].
      min_fg_pixels: the foreground fallback count.

    Returns:
      `(target, valid)`, both float32 `[B, H, W]`: target 1 (foreground) or 0, valid 1
      where the pixel is supervised (foreground or background) and 0 where ignored.
    """
    attention = tf.cast(tf.convert_to_tensor(attention), tf.float32)
    fg = attention > high
    count = tf.reduce_sum(tf.cast(fg, tf.int32), axis=[1, 2], keepdims=True)
    peak = tf.reduce_max(attention, axis=[1, 2], keepdims=True)
    fg = tf.where(count < min_fg_pixels, attention > 0.7 * peak, fg)
    bg = attention < low
    target = tf.cast(tf.logical_and(fg, tf.logical_not(bg)), tf.float32)
    valid = tf.cast(tf.logical_or(fg, bg), tf.float32)
    return target, valid


def masked_bce_with_logits(logits: tf.Tensor, target: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Mean binary cross-entropy (from logits) over the valid pixels of the whole batch;
    0 when no pixel is valid."""
    logits = tf.cast(logits, tf.float32)
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * valid), tf.reduce_sum(valid))


# ------------------------------------------------------------------------------- ADL
def adl_maps(features: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """ADL's two maps (Choe & Shim, CVPR 2019) from a feature map.

    The self-attention map is the channel mean `a = mean_c x[..., c]`; the importance
    map is `sigmoid(a)` and the drop mask is `1` where `a < threshold * max(a)` (per
    image), `0` on the most activated region.

    Args:
      features: float `[B, h, w, C]`.
      threshold: wsolevaluation's `adl_threshold` (gamma, default 0.9) in [0, 1].

    Returns:
      `(importance, drop_mask)`, both `[B, h, w, 1]` in the features' dtype.
    """
    features = tf.convert_to_tensor(features)
    attention = tf.reduce_mean(tf.cast(features, tf.float32), axis=-1, keepdims=True)
    importance = tf.sigmoid(attention)
    peak = tf.reduce_max(attention, axis=[1, 2, 3], keepdims=True)
    drop = tf.cast(attention < threshold * peak, tf.float32)
    return tf.cast(importance, features.dtype), tf.cast(drop, features.dtype)


def adl_select(features: tf.Tensor, threshold: float, drop_rate: float,
               uniform: tf.Tensor) -> tf.Tensor:
    """One ADL training step: the features times the drop mask when `uniform + drop_rate
    >= 1` (probability `drop_rate` for `uniform ~ U[0, 1)`), else times the importance
    map; one draw for the whole batch, as wsolevaluation."""
    importance, drop = adl_maps(features, threshold)
    use_drop = tf.cast(tf.floor(tf.cast(uniform, tf.float32) + drop_rate), features.dtype)
    return features * (use_drop * drop + (1 - use_drop) * importance)


# ---------------------------------------------------------------------------- CutMix
def stateless_beta(alpha: float, seed) -> tf.Tensor:
    """One draw of Beta(alpha, alpha) (float32 scalar) from a stateless seed `[2]`."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    a = tf.random.stateless_gamma([], seeds[0], alpha=alpha)
    b = tf.random.stateless_gamma([], seeds[1], alpha=alpha)
    return a / (a + b)


def cutmix_box(height, width, lam, center_y, center_x) -> tf.Tensor:
    """CutMix's box (Yun et al., ICCV 2019) for mixing ratio `lam` centred at a pixel.

    Side `int(S * sqrt(1 - lam))` for each image side `S`, centred on
    `(center_y, center_x)` with half-sides `cut // 2`, clipped to the image.

    Returns:
      int32 `[4]`: `(y0, x0, y1, x1)`, rows `y0:y1` and columns `x0:x1` (exclusive
      ends), as wsolevaluation's `rand_bbox`.
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    ratio = tf.sqrt(1.0 - tf.cast(lam, tf.float32))
    cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)  # int() truncation
    cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
    center_y = tf.cast(center_y, tf.int32)
    center_x = tf.cast(center_x, tf.int32)
    y0 = tf.clip_by_value(center_y - cut_h // 2, 0, height)
    x0 = tf.clip_by_value(center_x - cut_w // 2, 0, width)
    y1 = tf.clip_by_value(center_y + cut_h // 2, 0, height)
    x1 = tf.clip_by_value(center_x + cut_w // 2, 0, width)
    return tf.stack([y0, x0, y1, x1])


def cutmix_batch(images: tf.Tensor, labels: tf.Tensor, seed, beta: float = 1.0,
                 prob: float = 1.0) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """CutMix of one batch: with probability `prob`, one box (mixing ratio
    `lam ~ Beta(beta, beta)`, centre uniform over the pixels) is pasted into every image
    from the image at the same position of a random permutation of the batch.

    Args:
      images: `[B, H, W, C]` (any dtype).
      labels: int `[B]`.
      seed: stateless seed, int `[2]`; the same seed gives the same mix.
      beta: Beta parameter (> 0).
      prob: probability in [0, 1] that the batch is mixed at all.

    Returns:
      `(mixed_images, pasted_labels [B], label_weight)`: the loss is
      `label_weight * CE(labels) + (1 - label_weight) * CE(pasted_labels)` with
      `label_weight = 1 - box_area / (H * W)` (float32 scalar; 1 when not mixed).
    """
    images = tf.convert_to_tensor(images)
    labels = tf.convert_to_tensor(labels)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    apply = tf.random.stateless_uniform([], seeds[0]) < prob
    lam = stateless_beta(beta, seeds[1])
    center = tf.random.stateless_uniform([2], seeds[2], minval=0, maxval=2 ** 30,
                                         dtype=tf.int32) % tf.stack([height, width])
    permutation = tf.argsort(tf.random.stateless_uniform([shape[0]], seeds[3]))
    y0, x0, y1, x1 = tf.unstack(cutmix_box(height, width, lam, center[0], center[1]))
    rows = tf.range(height)
    cols = tf.range(width)
    inside = ((rows[:, None] >= y0) & (rows[:, None] < y1)
              & (cols[None, :] >= x0) & (cols[None, :] < x1))  # [H, W]
    inside = tf.logical_and(inside, apply)[None, :, :, None]
    mixed = tf.where(inside, tf.gather(images, permutation), images)
    area = tf.cast((y1 - y0) * (x1 - x0), tf.float32)
    weight = 1.0 - area / tf.cast(height * width, tf.float32)
    weight = tf.where(apply, weight, 1.0)
    return mixed, tf.gather(labels, permutation), weight
