"""Hide-and-Seek grid hiding (Singh & Lee, ICCV 2017) as a TensorFlow op.

`hide_patches` divides each image into S x S cells anchored at the top-left corner
(edge cells are truncated when S does not divide the height or width), draws S per
image uniformly from `grid_sizes` (0 means "leave this image whole") and replaces
every pixel of each cell, in all channels, by `fill_value` with probability
`hide_prob`.

How it is made fast (design and measurements in docs/design/hiding.md):

1. Random numbers are drawn at *cell* resolution only: one integer per cell of the
   finest grid, `[B, ceil(H / S_min), ceil(W / S_min)]`, plus one per image for its
   grid size. An image with a coarser S uses the top-left cells of that array.
2. Cell borders fall on multiples of every S. With `run_h = gcd(sizes, H)` and
   `run_w = gcd(sizes, W)` (16 and 16 for S = 16 at 224 x 224; 4 and 4 for the paper's
   mixed sizes), each block of `run_h` rows x `run_w` pixels lies in one cell, so the
   mask needs one entry per block, `[B, H / run_h, W / run_w]` (1/48 of a 224 x 224 x 3
   image or less). Two small gathers with per-image int32 indices `y // S_b` and
   `x // S_b` build it (two one-hot matmuls under XLA, whose CPU gathers are slow).
3. The image is viewed, without copying, as integer words (int32 where a run's bytes
   allow, so uint8 and 16-bit floats are processed 4 and 2 values at a time) of shape
   `[B*H/run_h, run_h, W/run_w, words per run]`, and multiplied by the 0/1 mask viewed
   as `[B*H/run_h, 1, W/run_w, 1]`: one broadcast multiply, one read and one write of
   the batch, nothing image-sized materialised. A non-zero fill uses
   `((x ^ f) * m) ^ f`. Kept pixels keep their exact bits; hidden ones get exactly
   the fill's bits (NaN included).
   When a run is shorter than 32 bytes (the broadcast is then slow outside XLA) or W
   or C is dynamic, the mask gets one entry per word of the row instead.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import tensorflow as tf

from keras_has.config.hiding_args import check_grid_sizes, check_hide_prob

__all__ = ["hide_patches", "validate_hiding_args", "stateless_seed"]

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
    grid_sizes = check_grid_sizes(grid_sizes)
    hide_prob = check_hide_prob(hide_prob)

    if isinstance(fill_value, (tf.Tensor, tf.Variable)):
        static = tf.get_static_value(fill_value)
        if static is None:
            raise TypeError(
                "`fill_value` must be a Python number or sequence (a value known when "
                f"the graph is built); received the symbolic tensor {fill_value!r}."
            )
        fill_value = static
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
    return grid_sizes, hide_prob, tuple(float(v) for v in fills.reshape(-1))


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


def stateless_seed(seed):
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
        `images` and `seed`. Caveat of `seed=None` inside `tf.data`: when TensorFlow's
        global seed is set (`tf.random.set_seed`, `keras.utils.set_random_seed`),
        tf.data replays the same unseeded draws every epoch; pass per-element seeds
        there instead (as `keras_has.data.make_train_dataset` does).

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

    seeds = None if seed is None else stateless_seed(seed)
    positive = [s for s in grid_sizes if s > 0]
    if not positive or hide_prob == 0.0:
        return tf.identity(images)

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
        xla = _in_xla_context()
        layout = _choose_layout(positive, batched.shape, images.dtype, xla)
        if images.dtype.is_floating:
            out = _hide_with_gradient(batched, keep, cell_size, fill, layout, xla)
        else:
            out = _apply_mask(batched, keep, cell_size, fill, layout, xla)
        out = tf.reshape(out, shape)
        return out if rank == 4 else out[0]


def _hide_with_gradient(images, keep, cell_size, fill, layout, xla):
    """`_apply_mask` with its gradient (bitcasts have none): 1 on kept pixels, 0 on hidden."""

    @tf.custom_gradient
    def hide(x):
        def grad(upstream):
            return _apply_mask(upstream, keep, cell_size, (0.0,), layout, xla)

        return _apply_mask(x, keep, cell_size, fill, layout, xla), grad

    return hide(images)


def _gcd(values):
    g = 0
    for v in values:
        g = math.gcd(g, int(v))
    return g


# Column runs shorter than this many bytes are not broadcast over (slow outside XLA):
# the mask then gets one entry per word of the row instead (measured; see the notes).
_MIN_RUN_BYTES = 32

_WORD_DTYPES = {8: tf.int64, 4: tf.int32, 2: tf.int16, 1: tf.uint8}

# Tests and benchmarks may force a layout `(run_h, run_w, word_bytes)` by setting this
# module attribute; None (the default) chooses it automatically (`_choose_layout`).
LAYOUT_OVERRIDE = None


def _choose_layout(positive_sizes, shape, dtype, xla):
    """Picks `(run_h, run_w, word_bytes)` for an image batch of static `shape`.

    Cell borders fall on multiples of every S. So with static H, `run_h = gcd(sizes, H)`
    consecutive rows always lie in the same cells, and with static W and C each run of
    `run_w = gcd(sizes, W)` pixels of a row (`run_w * C * itemsize` bytes) lies in one
    cell. The image is processed as integer words of `word_bytes` (4, 2 or 1, a word
    never straddling a run; under XLA one word per value), and the mask has one entry
    per run of rows and, along the row, one entry per column run (`run_w > 0`) or per
    word (`run_w = 0`: when W or C is dynamic, or when runs are too short to broadcast
    fast outside XLA).
    """
    if LAYOUT_OVERRIDE is not None:
        return LAYOUT_OVERRIDE
    _, height, width, channels = shape
    run_h = _gcd(list(positive_sizes) + [height]) if height is not None else 1
    if xla:
        # XLA fuses the broadcast for any run length, but packs bytes into wider words
        # slowly: one word per value.
        run_w = _gcd(list(positive_sizes) + [width]) if width is not None else 0
        return run_h, run_w if channels is not None else 0, dtype.size
    if width is None or channels is None:
        return run_h, 0, min(dtype.size, 4)
    run_w = _gcd(list(positive_sizes) + [width])
    run_bytes = run_w * channels * dtype.size
    word_bytes = next(n for n in (4, 2, 1) if run_bytes % n == 0)
    if run_bytes < _MIN_RUN_BYTES:
        run_w = 0
    return run_h, run_w, word_bytes


def _to_words(images, word_bytes):
    """Zero-copy view of `images` as a flat vector of integer words."""
    item = images.dtype.size
    word_dtype = _WORD_DTYPES[word_bytes]
    if images.dtype == word_dtype:
        return tf.reshape(images, [-1])
    if word_bytes == item:
        return tf.reshape(tf.bitcast(images, word_dtype), [-1])
    if word_bytes > item:
        return tf.bitcast(tf.reshape(images, [-1, word_bytes // item]), word_dtype)
    return tf.reshape(tf.bitcast(images, word_dtype), [-1])


def _from_words(words, dtype, shape, word_bytes):
    """Inverse of `_to_words`."""
    item = dtype.size
    if words.dtype == dtype:
        return tf.reshape(words, shape)
    if word_bytes < item:
        words = tf.reshape(words, [-1, item // word_bytes])
    return tf.reshape(tf.bitcast(words, dtype), shape)


def _fill_words(fill, dtype, channels, pixels, word_bytes):
    """The fill of `pixels` consecutive pixels as words `[pixels * C * itemsize / word]`,
    or None when every fill byte is zero."""
    values = np.asarray(fill, dtype=np.float64)
    if dtype == tf.uint8:
        values = np.clip(np.round(values), 0, 255)
    cast = values.astype(dtype.as_numpy_dtype)
    if not cast.view(np.uint8).any():
        return None
    one = tf.constant(cast, dtype=dtype)
    if cast.size == 1:
        one = tf.fill(tf.reshape(channels, [1]), tf.reshape(one, []))
    row = tf.tile(one, tf.reshape(pixels, [1]))  # [pixels * C]
    return _to_words(row, word_bytes)


def _apply_mask(images, keep, cell_size, fill, layout, xla):
    """Expands the cell decisions to one mask entry per run and applies it in words.

    With `R = H / run_h`, `P = W / run_w` and `Q` words per row, the words of the batch
    are viewed (and the 0/1 mask broadcast) as
      run_w > 0: `[B*R, run_h, P, Q/P]` times `[B*R, 1, P, 1]`
      run_w = 0: `[B*R, run_h, Q]` times `[B*R, 1, Q]`
    with the `run_h` axis dropped when it is 1. Kept words are multiplied by 1, hidden
    ones by 0; a non-zero fill goes through `((x ^ f) * m) ^ f`, so the result is
    bit-exact either way.
    """
    run_h, run_w, word_bytes = layout
    dtype = images.dtype
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    word_dtype = _WORD_DTYPES[word_bytes]
    words = _to_words(images, word_bytes)
    row_words = (w * c * dtype.size) // word_bytes
    rows = tf.range(h // run_h, dtype=tf.int32) * run_h
    if run_w:
        columns = tf.range(w // run_w, dtype=tf.int32) * run_w
        inner = [w // run_w, row_words // tf.maximum(w // run_w, 1)]
        mask_inner = [w // run_w, 1]
        fill_pixels = run_w
    else:
        # Word j of a row starts at byte j * word_bytes, in pixel (j * word_bytes) // (C * item).
        columns = (tf.range(row_words, dtype=tf.int32) * word_bytes) // (c * dtype.size)
        inner = [row_words]
        mask_inner = [row_words]
        fill_pixels = w
    mask = _expand_mask(tf.cast(keep, word_dtype), cell_size, rows, columns, xla)
    outer = [b * (h // run_h)] + ([run_h] if run_h > 1 else [])
    mask_outer = [b * (h // run_h)] + ([1] if run_h > 1 else [])
    words = tf.reshape(words, tf.stack(outer + inner))
    mask = tf.reshape(mask, tf.stack(mask_outer + mask_inner))
    fill_words = _fill_words(fill, dtype, c, fill_pixels, word_bytes)
    if fill_words is None:
        out = words * mask
    else:
        out = tf.bitwise.bitwise_xor(
            tf.bitwise.bitwise_xor(words, fill_words) * mask, fill_words)
    return _from_words(out, dtype, shape, word_bytes)


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


def _expand_mask(keep, cell_size, rows, columns, use_matmul):
    """Expands cell decisions `[B, cy, cx]` to `[B, R, P]` for pixel rows `rows` [R] and
    pixel columns `columns` [P].

    Default: two gathers, columns first (rows of the transposed cell grid, small), then
    whole mask rows (contiguous copies) for the H image rows. Under XLA, whose CPU
    gathers are slow, two batched one-hot matmuls `R_b @ keep_b @ C_b` instead.
    """
    shape = tf.shape(keep)
    b, cy, cx = shape[0], shape[1], shape[2]
    row_cell = rows[None, :] // cell_size[:, None]  # [B, R]
    col_cell = columns[None, :] // cell_size[:, None]  # [B, P]
    if use_matmul:
        row_hot = tf.cast(tf.equal(row_cell[:, :, None], tf.range(cy)[None, None, :]), tf.float32)
        col_hot = tf.cast(tf.equal(col_cell[:, None, :], tf.range(cx)[None, :, None]), tf.float32)
        mask = tf.matmul(tf.matmul(row_hot, tf.cast(keep, tf.float32)), col_hot)  # [B, R, P]
        return mask > 0.5 if keep.dtype == tf.bool else tf.cast(mask, keep.dtype)
    col_cell += tf.range(b, dtype=tf.int32)[:, None] * cx
    by_column = tf.reshape(tf.transpose(keep, [0, 2, 1]), tf.stack([b * cx, cy]))
    row_masks = tf.transpose(tf.gather(by_column, col_cell), [0, 2, 1])  # [B, cy, P]
    return tf.gather(row_masks, row_cell, axis=1, batch_dims=1)  # [B, R, P]


def _in_xla_context():
    """True while tracing inside `tf.function(jit_compile=True)` (or another XLA context)."""
    try:
        from tensorflow.python.ops import control_flow_util  # private; best effort

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # pragma: no cover - API moved: fall back to the gather path
        return False
