"""Hide-and-Seek grid hiding (Singh & Lee, ICCV 2017) as a TensorFlow op.

`hide_patches` divides each image into S x S cells anchored at the top-left corner
(edge cells are truncated when S does not divide the height or width), draws S per
image uniformly from `grid_sizes` (0 means "leave this image whole") and replaces
every pixel of each cell, in all channels, by `fill_value` with probability
`hide_prob`.

How the mask is built cheaply (see docs/notes/issue-2.md for measurements):

1. Random numbers are drawn at *cell* resolution only: one uniform per cell of the
   finest grid, `[B, ceil(H / S_min), ceil(W / S_min)]`, plus one grid-size index
   per image. An image with a coarser S simply uses the top-left cells of that array.
2. Each image's row and column cell indices (`y // S_b`, `x // S_b`) are tiny int32
   vectors. A gather along the columns (with the channels folded into the row,
   `W * C`) expands the cell mask to row masks `[B, cells_y, W * C]`; a second gather
   of whole rows (contiguous copies) expands those to the pixel mask
   `[B, H, W * C]` in bool, a quarter of a float32 image.
3. One select writes the output: `where(keep, image, fill)`, with the fill broadcast
   along the row; uint8 stays uint8 throughout, no per-pixel int64 arithmetic.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import tensorflow as tf

__all__ = ["hide_patches", "validate_hiding_args"]

_SUPPORTED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.uint8)


def validate_hiding_args(grid_sizes, hide_prob, fill_value):
    """Checks and normalises the hiding arguments (pure Python, no tensors).

    Args:
      grid_sizes: a non-empty sequence of non-negative Python ints (0 = no hiding).
      hide_prob: a number in [0, 1].
      fill_value: a number or a non-empty sequence of numbers (one per channel).

    Returns:
      `(grid_sizes, hide_prob, fill_value)` as `(tuple[int, ...], float, tuple[float, ...])`.

    Raises:
      ValueError / TypeError naming the argument and the value received.
    """
    if isinstance(grid_sizes, (numbers.Integral, np.integer)) and not isinstance(
        grid_sizes, bool
    ):
        grid_sizes = (grid_sizes,)
    if isinstance(grid_sizes, (str, bytes)) or not isinstance(
        grid_sizes, (Sequence, np.ndarray)
    ):
        raise TypeError(
            "`grid_sizes` must be a sequence of non-negative ints, e.g. (16, 32, 44, 56); "
            f"received {grid_sizes!r} of type {type(grid_sizes).__name__}."
        )
    sizes = []
    for s in list(grid_sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (numbers.Integral, np.integer)):
            # Accept integral floats such as 16.0 (e.g. from a JSON config).
            if isinstance(s, (float, np.floating)) and float(s).is_integer():
                s = int(s)
            else:
                raise TypeError(
                    "`grid_sizes` must contain only integers (0 = leave the image whole); "
                    f"received {s!r} in grid_sizes={tuple(grid_sizes)!r}."
                )
        s = int(s)
        if s < 0:
            raise ValueError(
                "`grid_sizes` must contain only non-negative integers (0 = leave the "
                f"image whole); received {s} in grid_sizes={tuple(grid_sizes)!r}."
            )
        sizes.append(s)
    if not sizes:
        raise ValueError(
            "`grid_sizes` must contain at least one size, e.g. (16, 32, 44, 56); "
            f"received an empty sequence {grid_sizes!r}."
        )

    if isinstance(hide_prob, (bool, np.bool_)) or not isinstance(
        hide_prob, (numbers.Real, np.floating, np.integer)
    ):
        raise TypeError(
            f"`hide_prob` must be a number in [0, 1]; received {hide_prob!r} "
            f"of type {type(hide_prob).__name__}."
        )
    hide_prob = float(hide_prob)
    if not 0.0 <= hide_prob <= 1.0:  # also rejects NaN
        raise ValueError(f"`hide_prob` must be in [0, 1]; received {hide_prob!r}.")

    if isinstance(fill_value, (tf.Tensor, tf.Variable)):
        fill_value = fill_value.numpy() if hasattr(fill_value, "numpy") else fill_value
    fills = np.asarray(fill_value, dtype=np.float64) if not isinstance(
        fill_value, (str, bytes)
    ) else None
    if fills is None or fills.ndim > 1 or fills.size == 0:
        raise ValueError(
            "`fill_value` must be a number or a 1-D sequence of one value per channel; "
            f"received {fill_value!r}."
        )
    if not np.all(np.isfinite(fills)):
        raise ValueError(f"`fill_value` must be finite; received {fill_value!r}.")
    return tuple(sizes), hide_prob, tuple(float(v) for v in fills.reshape(-1))


def _check_images(images):
    if images.dtype not in _SUPPORTED_DTYPES:
        raise TypeError(
            "`images` must have dtype float16, bfloat16, float32, float64 or uint8; "
            f"received {images.dtype.name}."
        )
    rank = images.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            "`images` must have rank 4 [batch, height, width, channels] or rank 3 "
            f"[height, width, channels]; received rank {rank} with shape {images.shape}."
        )


def _fill_constant(fill, channels, dtype):
    """Returns the fill as a `[1, 1, C or 1]`-broadcastable tensor of `dtype`."""
    if dtype == tf.uint8:
        fill = [min(max(round(v), 0), 255) for v in fill]
    return tf.constant(np.asarray(fill, dtype=np.float64), dtype=tf.float64)


def _seed_pair(seed):
    """Returns two independent stateless seeds `[2]` int64 derived from `seed`."""
    if isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(seed, bool):
        seed = tf.constant([int(seed), 0], dtype=tf.int64)
    else:
        seed = tf.convert_to_tensor(seed)
        if seed.dtype not in (tf.int32, tf.int64, tf.uint32, tf.uint64):
            raise TypeError(
                "`seed` must be None, a Python int or an integer tensor of shape [2]; "
                f"received dtype {seed.dtype.name}."
            )
        if seed.shape.rank is not None and seed.shape.as_list() != [2]:
            raise ValueError(
                "`seed` must be None, a Python int or an integer tensor of shape [2]; "
                f"received shape {seed.shape}."
            )
        seed = tf.cast(seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    return seeds[0], seeds[1]


def hide_patches(images, grid_sizes=(16, 32, 44, 56), hide_prob=0.5, fill_value=0.0, seed=None):
    """Hides random grid cells of each image (Hide-and-Seek).

    Args:
      images: `[B, H, W, C]` or `[H, W, C]` tensor of dtype float16, bfloat16, float32,
        float64 or uint8. Static or dynamic shapes; H and W need not be equal nor be
        multiples of the grid size.
      grid_sizes: non-empty sequence of non-negative ints. Each image draws one S
        uniformly from it; 0 leaves that image whole.
      hide_prob: probability in [0, 1] of hiding each cell, independently.
      fill_value: value written into hidden pixels, a number or one value per channel
        (length C). For uint8 images it is rounded and clipped to [0, 255].
      seed: None (fresh masks on every call), a Python int, or an integer tensor of
        shape `[2]` (a stateless seed). With a seed the output is a pure function of
        `images` and `seed`.

    Returns:
      A tensor with the shape and dtype of `images`.
    """
    grid_sizes, hide_prob, fill = validate_hiding_args(grid_sizes, hide_prob, fill_value)
    images = tf.convert_to_tensor(images)
    _check_images(images)
    rank = images.shape.rank
    channels = images.shape[-1]
    if channels is not None and len(fill) not in (1, channels):
        raise ValueError(
            f"`fill_value` must have length 1 or C={channels} (the number of channels); "
            f"received {len(fill)} values {fill!r}."
        )

    positive = [s for s in grid_sizes if s > 0]
    if not positive or hide_prob == 0.0:
        return tf.identity(images)
    seeds = None if seed is None else _seed_pair(seed)

    with tf.name_scope("hide_patches"):
        batched = images if rank == 4 else images[tf.newaxis]
        shape = tf.shape(batched)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        if channels is None and len(fill) > 1:
            tf.debugging.assert_equal(
                c, len(fill),
                message=f"`fill_value` must have length 1 or C; received {len(fill)} values",
            )

        s_min = min(positive)
        cells_y = (h + s_min - 1) // s_min
        cells_x = (w + s_min - 1) // s_min
        num_sizes = len(grid_sizes)
        if seeds is None:
            size_idx = tf.random.uniform([b], 0, num_sizes, dtype=tf.int32)
            u = tf.random.uniform(tf.stack([b, cells_y, cells_x]), dtype=tf.float32)
        else:
            size_idx = tf.random.stateless_uniform(
                [b], seed=seeds[0], minval=0, maxval=num_sizes, dtype=tf.int32
            )
            u = tf.random.stateless_uniform(
                tf.stack([b, cells_y, cells_x]), seed=seeds[1], dtype=tf.float32
            )
        # Size 0 means "no hiding": use a cell as big as any image, kept below.
        big = tf.maximum(h, w)
        sizes = tf.constant(grid_sizes, dtype=tf.int32)
        s_b = tf.gather(sizes, size_idx)
        whole = tf.equal(s_b, 0)
        s_b = tf.where(whole, big, s_b)
        keep = tf.logical_or(u >= hide_prob, whole[:, None, None])  # [B, cy, cx]

        # Column cell index for every (x, channel) position of a row: x // S_b.
        xc = tf.range(w * c, dtype=tf.int32) // c
        col_idx = xc[None, :] // s_b[:, None]  # [B, W*C]
        row_idx = tf.range(h, dtype=tf.int32)[None, :] // s_b[:, None]  # [B, H]
        row_masks = tf.gather(keep, col_idx, axis=2, batch_dims=1)  # [B, cy, W*C]
        mask = tf.gather(row_masks, row_idx, axis=1, batch_dims=1)  # [B, H, W*C]

        flat = tf.reshape(batched, tf.stack([b, h, w * c]))
        fill_t = tf.cast(_fill_constant(fill, channels, images.dtype), images.dtype)
        if len(fill) == 1:
            other = tf.reshape(fill_t, [])
        else:
            other = tf.tile(fill_t, tf.reshape(w, [1]))  # [W*C]
        out = tf.where(mask, flat, other)
        out = tf.reshape(out, shape)
        return out if rank == 4 else out[0]
