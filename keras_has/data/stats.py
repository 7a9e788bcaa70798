"""Per-channel normalisation statistics, streamed over a split and cached as JSON.

`get_normalization(source, split)` returns `(mean, std)`: two 3-tuples of floats in the
[0, 255] pixel scale over every pixel of every (decoded, original-size) image of the
split. The sums are accumulated in float64 with `tf.data.Dataset.reduce`, so memory does
not grow with the dataset (ILSVRC-sized splits work). The result is cached next to the
data (atomic JSON write); for read-only data pass `cache_dir`.
"""
from __future__ import annotations

import json
import logging
import math
import os

import tensorflow as tf

from keras_has.util.files import atomic_write_json

logger = logging.getLogger(__name__)

# torchvision / Keras ImageNet statistics in the [0, 255] scale, for pretrained backbones.

_CACHE_VERSION = 1


__all__ = ["compute_normalization", "cache_path", "STATS_DECODE_MIN_SIDE", "get_normalization",
           "default_normalization"]


def compute_normalization(dataset: tf.data.Dataset) -> tuple:
    """Streams `(mean, std)` over a dataset of raw examples (dicts with `image` [H, W, 3])."""

    def sums(example):
        pixels = tf.reshape(tf.cast(example["image"], tf.float64), [-1, 3])
        return (tf.reduce_sum(pixels, axis=0), tf.reduce_sum(tf.square(pixels), axis=0),
                tf.cast(tf.shape(pixels)[0], tf.float64))

    zeros = tf.zeros([3], tf.float64)
    total, total_sq, count = dataset.map(sums, num_parallel_calls=tf.data.AUTOTUNE).reduce(
        (zeros, zeros, tf.constant(0.0, tf.float64)),
        lambda acc, x: (acc[0] + x[0], acc[1] + x[1], acc[2] + x[2]))
    count = float(count.numpy())
    if count == 0:
        raise ValueError("compute_normalization: the dataset has no pixels (empty split?).")
    mean = total.numpy() / count
    var = total_sq.numpy() / count - mean ** 2
    std = [math.sqrt(max(v, 0.0)) for v in var]
    if min(std) == 0.0:
        raise ValueError(f"compute_normalization: a channel is constant (std {std}); cannot "
                         "normalise by it.")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def cache_path(source, split: str, cache_dir=None) -> str | None:
    """Where the statistics of `split` are cached (None: nowhere writable)."""
    folder, key, _ = source.stats_location(split)
    if cache_dir is not None:
        return os.path.join(os.fspath(cache_dir), f"normalization_{key}.json")
    if folder is not None and os.access(folder, os.W_OK):
        return os.path.join(folder, f"keras_has_normalization_{split}.json")
    return None


# The statistics pass decodes a JPEG whose shorter side is >= 2x this at a reduced scale
# (`keras_has.data.sources.decode_image`): a pixel mean and std barely move, the memory of
# a 60-megapixel photo does.
STATS_DECODE_MIN_SIDE = 1024


def get_normalization(source, split: str = "train", cache_dir=None, recompute: bool = False) -> tuple:
    """Per-channel `(mean, std)` of a split in [0, 255] scale, cached next to the data.

    Args:
      source: a Source or anything `keras_has.data.get_source` accepts.
      split: the split to measure (use the training split).
      cache_dir: folder for the JSON cache (for read-only data); None caches next to the
        data when writable, else logs a warning and does not cache.
      recompute: ignore an existing cache entry.

    Returns:
      `(mean, std)`, each a tuple of 3 floats.
    """
    from keras_has.data.registry import get_source
    from keras_has.data.sources import Source

    source = source if isinstance(source, Source) else get_source(source)
    source.check_split(split)
    path = cache_path(source, split, cache_dir)
    _, _, fingerprint = source.stats_location(split)
    if path is not None and os.path.isfile(path) and not recompute:
        try:
            with open(path) as f:
                cached = json.load(f)
            if (cached.get("version") == _CACHE_VERSION and cached.get("split") == split
                    and cached.get("fingerprint") == fingerprint):
                return tuple(cached["mean"]), tuple(cached["std"])
            logger.info("normalisation cache %s is stale; recomputing.", path)
        except (OSError, ValueError, KeyError) as e:
            logger.warning("ignoring unreadable normalisation cache %s (%s).", path, e)
    mean, std = compute_normalization(source.load(split, shuffle=False,
                                                  decode_min_side=STATS_DECODE_MIN_SIDE))
    if path is None:
        logger.warning("normalisation statistics of %r split %r not cached (data folder not "
                       "writable; pass cache_dir).", source.name, split)
    else:
        atomic_write_json(path, {"version": _CACHE_VERSION, "source": str(source.name),
                                  "split": split, "fingerprint": fingerprint,
                                  "mean": list(mean), "std": list(std)})
    return mean, std


def default_normalization(source, split: str, cache_dir=None) -> tuple:
    """The statistics the pipelines use when none are given.

    A source that prescribes its statistics (`Source.fixed_normalization`: ImageNet's
    constants for imagenet2012, no pass over 1.28M images) gets them; every other source
    uses `get_normalization(source, split)`.
    """
    if getattr(source, "fixed_normalization", None) is not None:
        return tuple(source.fixed_normalization[0]), tuple(source.fixed_normalization[1])
    return get_normalization(source, split, cache_dir=cache_dir)
