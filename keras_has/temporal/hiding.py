"""Hide-and-Seek in time (Singh & Lee, ICCV 2017, Section 4.2) as a TensorFlow op.

`hide_segments` divides the time axis of each example into contiguous segments of N
frames, starting at frame 0 (the last segment is truncated when N does not divide the
length), draws N per example uniformly from `segment_lengths` (0 = leave this example
whole) and replaces every value of each segment (all features, or all pixels and
channels of its frames) by `fill_value` with probability `hide_prob`: the image rule
of `keras_has.hiding.hide_patches`, transposed to time.

Randomness is drawn at segment resolution only (one integer per segment of the
shortest length, plus one per example for its length: `u mod n` picks it, uniform up
to n parts in 2^24), statelessly from `seed`, as in the image op; the decisions are
then gathered to one entry per frame and applied as a single `tf.where` broadcast over
the frame's values, so kept values keep their exact bits and hidden values get exactly
the fill. Padded frames (where `mask` is False) are never changed.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_has.hiding import stateless_seed

__all__ = ["hide_segments", "segment_keep_mask", "validate_segment_args"]

_SUPPORTED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.uint8)
_DRAW_RANGE = 2**24


def validate_segment_args(segment_lengths, hide_prob, fill_value):
    """Checks and normalises the arguments of `hide_segments` (pure Python).

    Args:
      segment_lengths: a non-negative int or a non-empty sequence of them, in frames
        (0 = no hiding for the examples that draw it).
      hide_prob: a number in [0, 1].
      fill_value: a number or a 1-D sequence (one value per feature or channel).

    Returns:
      `(lengths, hide_prob, fill)` as `(tuple[int, ...], float, tuple[float, ...])`.

    Raises:
      TypeError / ValueError naming the argument and the value received.
    """
    if isinstance(segment_lengths, (numbers.Integral, np.integer)) and not isinstance(
            segment_lengths, bool):
        segment_lengths = (segment_lengths,)
    if isinstance(segment_lengths, (str, bytes)) or not isinstance(
            segment_lengths, (Sequence, np.ndarray)):
        raise TypeError("`segment_lengths` must be a sequence of non-negative ints (frames), "
                        f"e.g. (0, 4, 8, 16); received {segment_lengths!r}.")
    lengths = []
    for n in list(segment_lengths):
        if isinstance(n, (float, np.floating)) and float(n).is_integer():
            n = int(n)
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (numbers.Integral, np.integer)):
            raise TypeError("`segment_lengths` must contain only integers (0 = no hiding); "
                            f"received {n!r} in {tuple(segment_lengths)!r}.")
        if int(n) < 0:
            raise ValueError("`segment_lengths` must contain only non-negative integers; "
                             f"received {int(n)} in {tuple(segment_lengths)!r}.")
        lengths.append(int(n))
    if not lengths:
        raise ValueError("`segment_lengths` must contain at least one length; received an "
                         "empty sequence.")
    if isinstance(hide_prob, (bool, np.bool_)) or not isinstance(
            hide_prob, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"`hide_prob` must be a number in [0, 1]; received {hide_prob!r}.")
    hide_prob = float(hide_prob)
    if not 0.0 <= hide_prob <= 1.0:
        raise ValueError(f"`hide_prob` must be in [0, 1]; received {hide_prob!r}.")
    if isinstance(fill_value, (tf.Tensor, tf.Variable)):
        static = tf.get_static_value(fill_value)
        if static is None:
            raise TypeError("`fill_value` must be known when the graph is built (a number "
                            f"or a sequence); received the symbolic tensor {fill_value!r}.")
        fill_value = static
    if isinstance(fill_value, (str, bytes)):
        raise ValueError(f"`fill_value` must be a number or a 1-D sequence; received "
                         f"{fill_value!r}.")
    fills = np.asarray(fill_value, dtype=np.float64)
    if fills.ndim > 1 or fills.size == 0:
        raise ValueError("`fill_value` must be a number or a 1-D sequence of one value per "
                         f"feature/channel; received shape {fills.shape}.")
    if not np.all(np.isfinite(fills)):
        raise ValueError(f"`fill_value` must be finite; received {fill_value!r}.")
    return tuple(lengths), hide_prob, tuple(float(v) for v in fills.reshape(-1))


def _hidden_frames(batch, frames, segment_lengths, hide_prob, seed):
    """`(hidden [B, T] bool, length [B] int32)`: the frames to hide and each example's N.

    One stateless integer draw `u` of shape `[B, 1 + ceil(T / N_min)]` in `[0, 2^24)`:
    column 0 picks the length (`u mod n`: uniform over the n lengths up to n parts in
    2^24), the others decide the segments (hidden iff `u < p * 2^24`: exactly never for
    p = 0 and always for p = 1; an example of length N uses the first `ceil(T / N)`).
    One small table gives each length its divisor and its threshold (0 for N = 0, so a
    whole example is never hidden), which keeps the op to a few small ops besides the
    per-frame gather.
    """
    positive = [n for n in segment_lengths if n > 0]
    n_min = min(positive)
    num_segments = (frames + n_min - 1) // n_min
    draw_shape = tf.stack([batch, 1 + num_segments])
    if seed is None:
        u = tf.random.uniform(draw_shape, 0, _DRAW_RANGE, dtype=tf.int32)
    else:
        u = tf.random.stateless_uniform(draw_shape, seed=stateless_seed(seed), minval=0,
                                        maxval=_DRAW_RANGE, dtype=tf.int32)
    threshold = int(round(hide_prob * _DRAW_RANGE))
    # Per length: [divisor, hide threshold, N]; N = 0: one segment (divisor 2^30), never
    # hidden.
    table = tf.constant([[n if n > 0 else 2**30, threshold if n > 0 else 0, n]
                         for n in segment_lengths], tf.int32)
    row = tf.gather(table, u[:, 0] % len(segment_lengths))  # [B, 3]
    hide_segment = u[:, 1:] < row[:, 1:2]  # [B, S]
    # Frame t lies in segment t // N of its example.
    segment_of_frame = tf.range(frames, dtype=tf.int32)[None, :] // row[:, 0:1]  # [B, T]
    hidden = tf.gather(hide_segment, segment_of_frame, batch_dims=1)  # [B, T]
    return hidden, row[:, 2]


def segment_keep_mask(batch, frames, segment_lengths, hide_prob, seed=None):
    """The per-frame keep decisions of `hide_segments`, without touching any data.

    Args:
      batch, frames: int scalars (Python or tensors), B and T.
      segment_lengths, hide_prob: as in `hide_segments` (already validated).
      seed: None, a Python int or an integer `[2]` stateless seed.

    Returns:
      `(keep, length)`: bool `[B, T]`, True where the frame is kept, and int32 `[B]`, the
      segment length each example drew (0 = whole).
    """
    hidden, length = _hidden_frames(batch, frames, segment_lengths, hide_prob, seed)
    return tf.logical_not(hidden), length


def hide_segments(x, segment_lengths=(0, 4, 8, 16), hide_prob=0.5, fill_value=0.0,
                  seed=None, mask=None):
    """Hides random contiguous segments of frames of each example (Hide-and-Seek in time).

    Args:
      x: frame features `[B, T, D]` or frames `[B, T, H, W, C]` (float16, bfloat16,
        float32, float64 or uint8). Static or dynamic shapes.
      segment_lengths: non-empty sequence of non-negative ints, in frames; each
        example draws one N uniformly from it; 0 leaves that example whole.
      hide_prob: probability in [0, 1] of hiding each segment, independently.
      fill_value: the value hidden frames take: a number, or one value per feature
        (length D) or per channel (length C); the dataset's mean feature / mean pixel
        in the paper. Rounded and clipped to [0, 255] for uint8.
      seed: None (fresh draws every call), a Python int or an integer `[2]` tensor (a
        stateless seed: the output is then a pure function of `x`, `mask` and `seed`).
      mask: optional `[B, T]` (bool, or numbers where > 0 is real), True on real frames;
        padded frames (False) are never changed. Segments are counted from frame 0, so
        for a sequence of real length L < T the last real segment is truncated at L.

    Returns:
      A tensor with the shape and dtype of `x`.
    """
    lengths, hide_prob, fill = validate_segment_args(segment_lengths, hide_prob, fill_value)
    x = tf.convert_to_tensor(x)
    if x.dtype not in _SUPPORTED_DTYPES:
        raise TypeError("`x` must have dtype float16, bfloat16, float32, float64 or uint8; "
                        f"received {x.dtype.name}.")
    rank = x.shape.rank
    if rank not in (3, 5):
        raise ValueError("`x` must be frame features [B, T, D] or frames [B, T, H, W, C]; "
                         f"received rank {rank} with shape {x.shape}.")
    last = x.shape[-1]
    if last is not None and len(fill) not in (1, last):
        raise ValueError(f"`fill_value` must have length 1 or {last} (the last axis of x, "
                         f"shape {x.shape}); received {len(fill)} values.")
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        if mask.shape.rank != 2:
            raise ValueError(f"`mask` must be [B, T]; received shape {mask.shape} for x of "
                             f"shape {x.shape}.")
        if mask.dtype != tf.bool:
            mask = mask > tf.zeros([], mask.dtype)
    if not any(n > 0 for n in lengths) or hide_prob == 0.0:
        return tf.identity(x)

    with tf.name_scope("hide_segments"):
        shape = tf.shape(x)
        hidden, _ = _hidden_frames(shape[0], shape[1], lengths, hide_prob, seed)
        if mask is not None:
            hidden = tf.logical_and(hidden, mask)
        hidden = hidden[(Ellipsis,) + (None,) * (rank - 2)]  # [B, T, 1(, 1, 1)]
        values = np.asarray(fill, np.float64)
        if x.dtype == tf.uint8:
            values = np.clip(np.round(values), 0, 255)
        fill_t = tf.constant(values.astype(x.dtype.as_numpy_dtype), dtype=x.dtype)
        return tf.where(hidden, fill_t, x)
