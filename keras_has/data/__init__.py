"""Input data: sources (synthetic, WSOL metadata folders, TFDS), tf.data pipelines, statistics.

    source = get_source("synthetic")            # or a WSOL folder path, or a TFDS name
    mean, std = get_normalization(source)       # streamed over "train", cached as JSON
    train = make_train_dataset(source, 64, 32, hiding={"grid_sizes": (8, 16), "hide_prob": 0.5}, seed=0)
    test = make_eval_dataset(source, 64, 32, split="test")
"""
from keras_has.data.pipeline import (
    crop_boxes,
    eval_cache_bytes,
    flip_boxes,
    make_eval_dataset,
    make_train_dataset,
    resize_boxes,
    resize_size_for,
    train_transform,
)
from keras_has.data.registry import get_source, list_sources
from keras_has.data.sources import Source, WsolSource, decode_image
from keras_has.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_has.data.stats import compute_normalization, get_normalization
from keras_has.data.wsol_metadata import MetadataError, WsolSplit, read_split

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MetadataError",
    "Source",
    "WsolSource",
    "WsolSplit",
    "compute_normalization",
    "crop_boxes",
    "decode_image",
    "eval_cache_bytes",
    "flip_boxes",
    "get_normalization",
    "get_source",
    "list_sources",
    "make_eval_dataset",
    "make_train_dataset",
    "read_split",
    "resize_boxes",
    "resize_size_for",
    "train_transform",
]
