"""tf.data training and evaluation pipelines.

Training (the paper's recipe scaled to `image_size` S): decode, resize the whole image to
`R x R` with `R = round(S * 256 / 224)`, random `S x S` crop, random horizontal flip,
preprocess (`(pixel - mean) / std` with the dataset's statistics, or a
`keras_has.data.preprocessing.Preprocessing` such as a pretrained backbone's), batch,
`hide_patches` (fill = the dataset's mean pixel in the model's value space: 0 after
dataset normalisation), prefetch.

Evaluation: decode, resize to `S x S`, preprocess the same way; every ground-truth box is
rescaled to the `S x S` frame as wsolevaluation's `resize_bbox` does (`int(coord * new / old)`).

Randomness: with a `seed`, every example gets a stateless seed pair from
`tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`, so runs repeat exactly
while each epoch draws fresh crops, flips and masks. Without a seed, nothing is repeatable.

Boxes are `x0, y0, x1, y1` inclusive pixels throughout.
"""
from __future__ import annotations

import numbers

import tensorflow as tf

from keras_has.data import stats as stats_lib
from keras_has.data.registry import get_source
from keras_has.data.sources import AUTOTUNE, Source

PAPER_RESIZE_RATIO = 256.0 / 224.0
_HIDING_KEYS = ("grid_sizes", "hide_prob", "fill_value")


# ------------------------------------------------------------------ pure box transforms

__all__ = ["PAPER_RESIZE_RATIO", "resize_boxes", "crop_boxes", "flip_boxes", "resize_size_for",
           "resize_image", "train_transform", "normalize", "make_train_dataset",
           "make_eval_dataset", "eval_cache_bytes"]


def resize_boxes(boxes, original_size, new_size):
    """Rescales inclusive pixel boxes like wsolevaluation's `resize_bbox`.

    Args:
      boxes: float `[N, 4]` x0, y0, x1, y1 in the original image.
      original_size: `(height, width)` of the original image.
      new_size: `(height, width)` of the resized image.

    Returns:
      float32 `[N, 4]`: `floor(coord * new / old)` per axis (wsolevaluation's `int()` of
      a non-negative value).
    """
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
    ratio = tf.cast(new_size, tf.float32) / tf.cast(original_size, tf.float32)  # (y, x)
    return tf.floor(boxes * tf.gather(ratio, [1, 0, 1, 0]))


def crop_boxes(boxes, offset, crop_size):
    """Moves boxes into a crop window and clips them to it.

    Args:
      boxes: float `[N, 4]` inclusive pixels of the uncropped image.
      offset: `(top, left)` of the crop window.
      crop_size: `(height, width)` of the crop window.

    Returns:
      `(boxes [M, 4], keep [N] bool)`: boxes that overlap the window (at least one
      pixel), translated and clipped to `[0, width - 1] x [0, height - 1]`, and which of the
      input boxes they are.
    """
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
    top, left = tf.cast(offset[0], tf.float32), tf.cast(offset[1], tf.float32)
    h, w = tf.cast(crop_size[0], tf.float32), tf.cast(crop_size[1], tf.float32)
    moved = boxes - tf.stack([left, top, left, top])
    keep = ((moved[:, 2] >= 0) & (moved[:, 0] <= w - 1)
            & (moved[:, 3] >= 0) & (moved[:, 1] <= h - 1))
    clipped = tf.stack([tf.clip_by_value(moved[:, 0], 0.0, w - 1), tf.clip_by_value(moved[:, 1], 0.0, h - 1),
                        tf.clip_by_value(moved[:, 2], 0.0, w - 1), tf.clip_by_value(moved[:, 3], 0.0, h - 1)],
                       axis=1)
    return tf.boolean_mask(clipped, keep), keep


def flip_boxes(boxes, width):
    """Mirrors boxes left-right in an image of `width` pixels: x -> width - 1 - x."""
    boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
    w = tf.cast(width, tf.float32)
    return tf.stack([w - 1 - boxes[:, 2], boxes[:, 1], w - 1 - boxes[:, 0], boxes[:, 3]], axis=1)


# ------------------------------------------------------------------ image transforms

def resize_size_for(image_size: int) -> int:
    """The pre-crop size: the paper's 256 for 224, scaled (round(S * 256 / 224))."""
    return int(round(image_size * PAPER_RESIZE_RATIO))


def resize_image(image, size):
    """uint8 or float `[H, W, 3]` (or a batch `[N, H, W, 3]`) in [0, 255] -> float32 at
    `size` (an int side or `(height, width)`), bilinear with antialiasing, clipped to
    [0, 255]. The one resize of the input pipelines and of the serving signatures."""
    size = [size, size] if isinstance(size, int) else list(size)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def train_transform(image, boxes, seed, image_size: int, resize_size: int | None = None):
    """Resize to R x R, random S x S crop, random horizontal flip; boxes follow.

    Args:
      image: uint8 or float `[H, W, C]`.
      boxes: float `[N, 4]` inclusive pixels of `image`, or None (training: the image
        only; the random crop and flip do not depend on the boxes).
      seed: int `[2]` stateless seed; the output is a pure function of the inputs.
      image_size: crop size `S`.
      resize_size: `R >= S` (default `round(S * 256 / 224)`).

    Returns:
      `(image float32 [S, S, C] in the input's scale, boxes float32 [M, 4] or None,
      params)`:
      boxes resized with `resize_boxes`, cropped with `crop_boxes` (boxes that leave the
      crop are dropped), flipped with `flip_boxes`; `params` is a dict with `offset`
      int32 `[2]` (top, left) and `flip` bool.
    """
    resize_size = resize_size_for(image_size) if resize_size is None else int(resize_size)
    seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    original = tf.shape(image)[:2]
    resized = resize_image(image, resize_size)
    offset = tf.random.stateless_uniform([2], seed=seeds[0], minval=0,
                                         maxval=resize_size - image_size + 1, dtype=tf.int32)
    crop = resized[offset[0]:offset[0] + image_size, offset[1]:offset[1] + image_size]
    flip = tf.random.stateless_uniform([], seed=seeds[1]) < 0.5
    crop = tf.cond(flip, lambda: tf.reverse(crop, axis=[1]), lambda: crop)
    crop = tf.ensure_shape(crop, [image_size, image_size, None])
    new_boxes = None
    if boxes is not None:
        new_boxes = resize_boxes(boxes, original, [resize_size, resize_size])
        new_boxes, _ = crop_boxes(new_boxes, offset, [image_size, image_size])
        new_boxes = tf.cond(flip, lambda: flip_boxes(new_boxes, image_size),
                            lambda: new_boxes)
    return crop, new_boxes, {"offset": offset, "flip": flip}


def normalize(image, mean, std):
    """(pixel - mean) / std with per-channel `mean`, `std` in the [0, 255] scale."""
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (tf.cast(image, tf.float32) - mean) / std


# ------------------------------------------------------------------ argument checks

def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; received {value!r}.")
    return int(value)


def _check_stats(name, value):
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except TypeError:
        raise ValueError(f"`{name}` must be 3 per-channel floats in [0, 255] scale; "
                         f"received {value!r}.") from None
    if len(values) != 3:
        raise ValueError(f"`{name}` must be 3 per-channel floats in [0, 255] scale; "
                         f"received {len(values)} values {values}.")
    if name == "std" and min(values) <= 0:
        raise ValueError(f"`std` must be positive; received {values}.")
    return values


def _check_hiding(hiding):
    if hiding is None:
        return None
    if not isinstance(hiding, dict):
        raise ValueError("`hiding` must be None or a dict {'grid_sizes': (...), 'hide_prob': p}; "
                         f"received {type(hiding).__name__}.")
    unknown = set(hiding) - set(_HIDING_KEYS)
    if unknown:
        raise ValueError(f"`hiding` has unknown keys {sorted(unknown)}; expected only "
                         f"{list(_HIDING_KEYS)} (fill_value default: the dataset mean pixel "
                         "in the model's value space).")
    return dict(hiding)


def _resolve_preprocessing(source, mean, std, preprocessing, split, cache_dir):
    """The `Preprocessing` the pipeline applies (dataset statistics unless given)."""
    from keras_has.data.preprocessing import Preprocessing, make_preprocessing

    if preprocessing is None:
        mean, std = _resolve_normalization(source, mean, std, split, cache_dir)
        return make_preprocessing("dataset", mean, std)
    if not isinstance(preprocessing, Preprocessing):
        raise ValueError("`preprocessing` must be a keras_has.data.preprocessing.Preprocessing or "
                         f"None; received {type(preprocessing).__name__}.")
    if mean is not None or std is not None:
        raise ValueError("pass either `preprocessing` or `mean`/`std`, not both.")
    return preprocessing


def _resolve_normalization(source, mean, std, split, cache_dir):
    mean, std = _check_stats("mean", mean), _check_stats("std", std)
    if (mean is None) != (std is None):
        raise ValueError("`mean` and `std` must be given together (or both None to use the "
                         "source's cached statistics).")
    if mean is None:
        mean, std = stats_lib.default_normalization(source, split, cache_dir=cache_dir)
    return mean, std


def _seed_stream(seed):
    """An infinite dataset of int64 `[2]` stateless seeds, fresh on each iteration."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


# ------------------------------------------------------------------ datasets

def _data_sharded_options() -> tf.data.Options:
    """Options that make a multi-worker strategy shard by element (`DATA`), not by
    file: a TFDS dataset with fewer files than workers (the built-in one is a single
    file) cannot be split by file. Every worker reads the same seeded order and keeps
    every N-th batch, so the shards are disjoint and cover the data."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def make_train_dataset(source, image_size, batch_size, hiding=None, seed=None, split="train",
                       mean=None, std=None, *, drop_remainder=False, shuffle=True,
                       resize_size=None, stats_cache_dir=None, preprocessing=None,
                       hiding_share=None):
    """The training dataset: `(images float32 [B, S, S, 3] preprocessed, labels int32 [B])`.

    Args:
      source: a Source or anything `get_source` accepts.
      image_size: crop size `S`.
      batch_size: `B`.
      hiding: None (no hiding) or `{"grid_sizes": (...), "hide_prob": p}` with an
        optional `"fill_value"` (a number or 3 per-channel values in the model's value
        space); patches are hidden per image, after batching. The default fill is the
        dataset's mean pixel in the model's value space (0 under dataset statistics).
      seed: int for a repeatable pipeline (order, crops, flips, masks); None otherwise.
      split: the split to read.
      mean, std: per-channel statistics in [0, 255] scale; None uses the source's
        (streamed, cached) statistics of `split`, or the ImageNet constants for imagenet2012.
      drop_remainder: drop the last partial batch (static batch shape for distribution).
      shuffle: shuffle the example order (each epoch anew).
      resize_size: pre-crop size (default `round(S * 256 / 224)`).
      stats_cache_dir: where statistics are cached when the data folder is read-only.
      preprocessing: a `keras_has.data.preprocessing.Preprocessing` applied instead of
        `mean` / `std` (e.g. a pretrained backbone's); None uses the statistics.
      hiding_share: None (every image goes through `hiding`), or a float32 scalar in
        [0, 1], typically a `tf.Variable` that a callback sets per epoch
        (`keras_has.train.callbacks.HidingSchedule`): each image is hidden with this
        probability, else left whole. Read when a batch is made, so a change reaches
        the batches made after it (a prefetched few may precede it).
    """
    source = get_source(source) if not isinstance(source, Source) else source
    image_size = _check_int("image_size", image_size, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    if hiding_share is not None and hiding is None:
        raise ValueError("`hiding_share` needs `hiding` (the share of images it hides); "
                         "received hiding=None")
    resize_size = resize_size_for(image_size) if resize_size is None else resize_size
    resize_size = _check_int("resize_size", resize_size, image_size)
    hiding = _check_hiding(hiding)
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    source.check_split(split)
    prep = _resolve_preprocessing(source, mean, std, preprocessing, split, stats_cache_dir)
    if hiding is not None:
        from keras_has.hiding import hide_patches  # bad values raise when the map is traced

        if "fill_value" not in hiding:
            if prep.mode == "dataset":
                hiding["fill_value"] = 0.0
            else:
                data_mean, _ = _resolve_normalization(source, None, None, split,
                                                      stats_cache_dir)
                hiding["fill_value"] = prep.value_of(data_mean)

    # A large photo is decoded at a reduced scale that keeps >= 2 source pixels per pixel
    # of the R x R resize (`decode_image`); images up to 4R on the shorter side are
    # decoded whole, so every usual dataset is read exactly as before.
    ds = source.load(split, shuffle=shuffle, seed=seed, decode_min_side=2 * resize_size)
    ds = tf.data.Dataset.zip((ds, _seed_stream(seed)))

    def augment(example, pair):
        image, _, _ = train_transform(example["image"], None, pair, image_size, resize_size)
        hide_seed = tf.random.experimental.stateless_fold_in(pair, 1)
        return prep.apply(image), example["label"], hide_seed

    ds = ds.map(augment, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    if hiding is not None:
        def hide(images, labels, seeds):
            hidden = hide_patches(images, seed=seeds[0], **hiding)
            if hiding_share is not None:
                draw = tf.random.stateless_uniform(
                    [tf.shape(images)[0]], tf.random.experimental.stateless_fold_in(
                        seeds[0], 2))
                chosen = draw < tf.cast(hiding_share, tf.float32)
                hidden = tf.where(chosen[:, None, None, None], hidden, images)
            return hidden, labels
        ds = ds.map(hide, num_parallel_calls=AUTOTUNE)
    else:
        ds = ds.map(lambda images, labels, seeds: (images, labels))
    options = _data_sharded_options()
    options.deterministic = seed is not None
    return ds.with_options(options).prefetch(AUTOTUNE)


def eval_cache_bytes(source, image_size, split="test"):
    """Bytes that `make_eval_dataset(..., cache=True)` keeps for `split` (float32 image,
    and mask and ignore where the source has masks), or None when the split's size is
    unknown."""
    source = get_source(source) if not isinstance(source, Source) else source
    count = source.num_examples(split)
    if count is None or count < 0:
        return None
    per_pixel = 3 * 4 + (4 + 1 if source.has_masks(split) else 0)
    return int(count) * int(image_size) ** 2 * per_pixel


def make_eval_dataset(source, image_size, batch_size, split="test", mean=None, std=None, *,
                      max_boxes=None, drop_remainder=False, stats_split=None,
                      stats_cache_dir=None, preprocessing=None, cache=False):
    """The evaluation dataset: batches of dicts (docs/architecture.md).

    Keys: `image` float32 `[B, S, S, 3]` normalised, `label` int32 `[B]`, `boxes` float32
    `[B, M, 4]` inclusive pixels of the `S x S` frame (padded rows are -1), `num_boxes`
    int32 `[B]`, `image_id` string `[B]`, `original_size` int32 `[B, 2]` (height, width),
    and where the source has masks `mask` float32 `[B, S, S]` in {0, 1} and `ignore` bool
    `[B, S, S]`.

    Args:
      source: a Source or anything `get_source` accepts.
      image_size: `S`.
      batch_size: `B`.
      split: the split to read (in file order, no augmentation).
      mean, std: per-channel statistics; None uses the source's training statistics.
      max_boxes: None pads `M` to the most boxes in each batch; an int fixes `M` (an
        image with more boxes raises an error).
      drop_remainder: drop the last partial batch.
      stats_split: split whose statistics normalise (default: "train" if offered, else
        `split`); ignored when `mean` and `std` are given.
      stats_cache_dir: where statistics are cached when the data folder is read-only.
      preprocessing: a `keras_has.data.preprocessing.Preprocessing` applied instead of
        `mean` / `std` (the training run's); None uses the statistics.
      cache: keep the prepared examples (decoded, resized, preprocessed) in memory after
        the first full pass, so later passes skip reading and decoding
        (`eval_cache_bytes` says how much that takes).
    """
    source = get_source(source) if not isinstance(source, Source) else source
    image_size = _check_int("image_size", image_size, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    if max_boxes is not None:
        max_boxes = _check_int("max_boxes", max_boxes, 1)
    source.check_localized(split)
    if stats_split is None:
        stats_split = "train" if "train" in source.splits else split
    prep = _resolve_preprocessing(source, mean, std, preprocessing, stats_split,
                                  stats_cache_dir)
    with_masks = source.has_masks(split)
    size = [image_size, image_size]

    def prepare(example):
        image = example["image"]
        original = tf.shape(image)[:2]
        boxes = resize_boxes(example["boxes"], original, size)
        num_boxes = tf.shape(boxes)[0]
        if max_boxes is not None:
            check = tf.debugging.assert_less_equal(
                num_boxes, max_boxes,
                message=f"make_eval_dataset: an image has more boxes than max_boxes={max_boxes}")
            with tf.control_dependencies([check]):
                boxes = tf.identity(boxes)
        out = {
            "image": prep.apply(resize_image(image, image_size)),
            "label": tf.cast(example["label"], tf.int32),
            "boxes": boxes,
            "num_boxes": num_boxes,
            "image_id": example["image_id"],
            "original_size": tf.cast(original, tf.int32),
        }
        if with_masks:
            for key in ("mask", "ignore"):
                resized = tf.image.resize(tf.cast(example[key], tf.uint8)[:, :, None], size,
                                          method="nearest")[:, :, 0] > 0
                out[key] = tf.cast(resized, tf.float32) if key == "mask" else resized
        return out

    # Decoded at full size (no `decode_min_side`): boxes, masks and `original_size` keep
    # the photo's own pixel grid.
    ds = source.load(split, shuffle=False).map(tf.autograph.experimental.do_not_convert(prepare),
                                               num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    padded_shapes = {"image": size + [3], "label": [], "boxes": [max_boxes, 4],
                     "num_boxes": [], "image_id": [], "original_size": [2]}
    padding_values = {"image": 0.0, "label": 0, "boxes": -1.0, "num_boxes": 0,
                      "image_id": "", "original_size": 0}
    if with_masks:
        padded_shapes.update(mask=size, ignore=size)
        padding_values.update(mask=0.0, ignore=False)
    ds = ds.padded_batch(batch_size, padded_shapes=padded_shapes,
                         padding_values=padding_values, drop_remainder=drop_remainder)
    options = _data_sharded_options()
    # No autotuning model for a pass in file order: dropping an autotuned iterator
    # waits for its optimisation thread's current sleep, which grows with the
    # iterator's age (seconds after a long pass, docs/design/performance.md "End to
    # end"); AUTOTUNE parallelism then means one call per core.
    options.autotune.enabled = False
    return ds.with_options(options).prefetch(AUTOTUNE)
