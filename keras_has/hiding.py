"""Hide-and-Seek grid hiding (Singh & Lee, ICCV 2017) as a TensorFlow op.

`hide_patches` divides each image into S x S cells anchored at the top-left corner
(edge cells are truncated when S does not divide the height or width), draws S per
image uniformly from `grid_sizes` (0 means "leave this image whole") and replaces
every pixel of each cell, in all channels, by `fill_value` with probability
`hide_prob`.

How it is made fast (measurements in docs/notes/issue-2.md):

1. Random numbers are drawn at *cell* resolution only: one uniform per cell of the
   finest grid, `[B, ceil(H / S_min), ceil(W / S_min)]`, and one grid-size index per
   image. An image with a coarser S uses the top-left cells of that array.
2. Let g be the largest integer dividing every positive grid size and W (4 for the
   paper's sizes at W = 224). Cell borders fall on multiples of g, so each run of g
   pixels of a row lies in one cell. The cell decisions are expanded to a mask with
   one entry per run, `[B, H, W / g]` (a 1/(g*C) fraction of the image), by two
   gathers: columns first (rows of the transposed cell grid, tiny), then whole mask
   rows (contiguous copies), using per-image indices `x // S_b` and `y // S_b` in int32.
3. The image, viewed as `[B*H*W/g, g*C]`, is multiplied by the mask viewed as
   `[B*H*W/g, 1]` (one broadcast multiply, one read and one write of the image, in
   its own dtype: uint8 stays uint8); a non-zero fill uses one broadcast select
   (floats) or `(x - f) * m + f` in modular uint8 arithmetic. When runs would be
   shorter than 32 bytes (or W or C is dynamic), the mask is built at full
   resolution `[B, H, W*C]` instead and applied element-wise.

Images are assumed finite: with a zero fill, a hidden NaN or inf stays NaN (x * 0).
"""
from __future__ import annotations

import math
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


def _stateless_seed(seed):
    """Returns the stateless seed `[2]` int64 for a Python int or an integer `[2]` tensor."""
    if isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(seed, bool):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise TypeError(
            "`seed` must be None, a Python int or an integer tensor of shape [2]; "
            f"received dtype {seed.dtype.name}."
        )
    if seed.shape.rank is not None and seed.shape.as_list() != [2]:
        raise ValueError(
            "`seed` must be None, a Python int or an integer tensor of shape [2]; "
            f"received shape {seed.shape}."
        )
    return tf.cast(seed, tf.int64)


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
    seeds = None if seed is None else _stateless_seed(seed)

    with tf.name_scope("hide_patches"):
        batched = images if rank == 4 else images[tf.newaxis]
        shape = tf.shape(batched)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        if channels is None and len(fill) > 1:
            check = tf.debugging.assert_equal(
                c, len(fill),
                message=f"`fill_value` must have length 1 or C (the number of channels); "
                f"received {len(fill)} values {fill!r}",
            )
            with tf.control_dependencies([check]):
                batched = tf.identity(batched)
        keep, cell_size = _draw_cells(b, h, w, grid_sizes, hide_prob, seeds)
        zero_fill = all(v == 0.0 for v in fill)
        mask_dtype = tf.bool if not zero_fill and images.dtype != tf.uint8 else images.dtype
        keep = tf.cast(keep, mask_dtype)

        xla = _in_xla_context()
        seg = _segment_width(positive, batched.shape[2], channels, images.dtype, xla)
        if seg:
            # Segments of `seg` pixels never straddle a cell: mask [B, H, W/seg] -> [N, 1].
            columns = tf.range(w // seg, dtype=tf.int32) * seg
            mask = _expand_mask(keep, cell_size, h, columns, xla)
            pixels = tf.reshape(batched, tf.stack([-1, seg * c]))
            mask = tf.reshape(mask, [-1, 1])
            fill_row = _fill_row(fill, seg, images.dtype)
        else:
            # Full resolution: one mask entry per (pixel, channel), [B*H, W*C].
            columns = tf.range(w * c, dtype=tf.int32) // c
            mask = _expand_mask(keep, cell_size, h, columns, xla)
            pixels = tf.reshape(batched, tf.stack([b * h, w * c]))
            mask = tf.reshape(mask, tf.stack([b * h, w * c]))
            width = batched.shape[2]
            fill_row = _fill_row(fill, width if width is not None else w, images.dtype)
        out = _apply(pixels, mask, fill_row, zero_fill)
        out = tf.reshape(out, shape)
        return out if rank == 4 else out[0]


# Segment path only when a segment row is at least this many bytes: below it the
# broadcast multiply over a [N, 1] mask is slower than a full-resolution mask.
_MIN_SEGMENT_BYTES = 32


def _segment_width(positive_sizes, width, channels, dtype, xla):
    """Largest g dividing every positive grid size and W, or 0 for the full-resolution path.

    Needs static W and C. Under XLA the broadcast multiply is fused, so any g > 0 will
    do; otherwise short runs fall back to the full-resolution mask. Cell boundaries fall on multiples of g, so a run of g pixels
    of one row lies in a single cell and shares one mask value.
    """
    if width is None or channels is None:
        return 0
    g = width
    for s in positive_sizes:
        g = math.gcd(g, s)
    if not xla and g * channels * dtype.size < _MIN_SEGMENT_BYTES:
        return 0
    return g


_DRAW_RANGE = 2**24


def _draw_cells(b, h, w, grid_sizes, hide_prob, seeds):
    """Draws the per-image grid size and the per-cell keep decisions.

    Returns:
      keep: bool `[B, ceil(H / S_min), ceil(W / S_min)]`, True where the cell is kept
        (an image of size S uses the top-left `ceil(H / S) x ceil(W / S)` cells).
      cell_size: int32 `[B]`, the S of each image; images drawing 0 get `max(H, W)`
        (one cell covering the whole image, always kept).
    """
    s_min = min(s for s in grid_sizes if s > 0)
    cells_y = (h + s_min - 1) // s_min
    cells_x = (w + s_min - 1) // s_min
    cells_shape = tf.stack([b, cells_y, cells_x])
    num_sizes = len(grid_sizes)
    # One integer draw per image: column 0 picks the grid size, the rest are the cells.
    # (Integer draws are identical with and without XLA for a given seed; float draws
    # and seeds derived by stateless_split are not.)
    draw_shape = tf.stack([b, 1 + cells_y * cells_x])
    if seeds is None:
        u = tf.random.uniform(draw_shape, 0, _DRAW_RANGE, dtype=tf.int32)
    else:
        u = tf.random.stateless_uniform(
            draw_shape, seed=seeds, minval=0, maxval=_DRAW_RANGE, dtype=tf.int32
        )
    # floor(u * n / 2^24): uniform over the n sizes up to 1 part in 2^24.
    size_idx = tf.cast((tf.cast(u[:, 0], tf.int64) * num_sizes) // _DRAW_RANGE, tf.int32)
    u = tf.reshape(u[:, 1:], cells_shape)
    cell_size = tf.gather(tf.constant(grid_sizes, dtype=tf.int32), size_idx)
    whole = tf.equal(cell_size, 0)
    cell_size = tf.where(whole, tf.maximum(tf.maximum(h, w), 1), cell_size)
    # Hide iff u < p * 2^24: probability p up to 2^-24 (exactly 0 and 1 at the ends).
    keep = tf.logical_or(u >= int(round(hide_prob * _DRAW_RANGE)), whole[:, None, None])
    return keep, cell_size


def _expand_mask(keep, cell_size, h, columns, use_matmul):
    """Expands cell decisions `[B, cy, cx]` to `[B, H, P]` for column pixels `columns` [P].

    Default: two gathers, columns first (rows of the transposed cell grid, small), then
    whole mask rows (contiguous copies) for the H image rows. Under XLA, whose CPU
    gathers are slow, two batched one-hot matmuls `R_b @ keep_b @ C_b` instead.
    """
    shape = tf.shape(keep)
    b, cy, cx = shape[0], shape[1], shape[2]
    row_cell = tf.range(h, dtype=tf.int32)[None, :] // cell_size[:, None]  # [B, H]
    col_cell = columns[None, :] // cell_size[:, None]  # [B, P]
    if use_matmul:
        rows = tf.cast(tf.equal(row_cell[:, :, None], tf.range(cy)[None, None, :]), tf.float32)
        cols = tf.cast(tf.equal(col_cell[:, None, :], tf.range(cx)[None, :, None]), tf.float32)
        mask = tf.matmul(tf.matmul(rows, tf.cast(keep, tf.float32)), cols)  # [B, H, P]
        return mask > 0.5 if keep.dtype == tf.bool else tf.cast(mask, keep.dtype)
    col_cell += tf.range(b, dtype=tf.int32)[:, None] * cx
    by_column = tf.reshape(tf.transpose(keep, [0, 2, 1]), tf.stack([b * cx, cy]))
    row_masks = tf.transpose(tf.gather(by_column, col_cell), [0, 2, 1])  # [B, cy, P]
    return tf.gather(row_masks, row_cell, axis=1, batch_dims=1)  # [B, H, P]


def _in_xla_context():
    """True while tracing inside `tf.function(jit_compile=True)` (or another XLA context)."""
    try:
        from tensorflow.python.ops import control_flow_util  # private; best effort

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # pragma: no cover - API moved: fall back to the gather path
        return False


def _fill_row(fill, repeats, dtype):
    """The fill as a scalar (one value) or a `[1, repeats * C]` row in `dtype`."""
    values = np.asarray(fill, dtype=np.float64)
    if dtype == tf.uint8:
        values = np.clip(np.round(values), 0, 255)
    if values.size == 1:
        return tf.constant(values[0], dtype=dtype)
    if isinstance(repeats, int):
        return tf.constant(np.tile(values, repeats)[None, :], dtype=dtype)
    return tf.tile(tf.constant(values, dtype=dtype), tf.reshape(repeats, [1]))[None, :]


def _apply(pixels, mask, fill, zero_fill):
    """Writes the fill where `mask` is 0/False; `mask` is `pixels`-shaped or `[N, 1]`."""
    if zero_fill:
        return pixels * mask  # mask in the pixels' dtype, 0 or 1
    if pixels.dtype == tf.uint8:
        # Exact in modular uint8 arithmetic: (x - f) * 1 + f = x, (x - f) * 0 + f = f.
        return (pixels - fill) * mask + fill
    return tf.where(mask, pixels, fill)
