"""Keras layers of the temporal side: hiding in time and masked average pooling over time."""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_has.temporal.hiding import hide_segments, validate_segment_args

__all__ = ["TemporalHideAndSeek", "MaskedTemporalAverage"]


@keras.saving.register_keras_serializable(package="keras_has")
class TemporalHideAndSeek(keras.layers.Layer):
    """Hide-and-Seek in time: hides random contiguous segments of training sequences.

    Identity unless called with `training=True` (nothing is hidden at test time). Each
    example draws its segment length N from `segment_lengths` (0 = whole); each segment
    of N frames (from frame 0, the last one truncated) is hidden with probability
    `hide_prob` and filled with `fill_value`; padded frames (mask False) are never
    changed. Fresh draws on every call; with an integer `seed` the sequence of draws is
    reproducible (a `keras.random.SeedGenerator` advances on every call).

    Args:
      segment_lengths: non-empty sequence of non-negative ints (frames).
      hide_prob: probability in [0, 1] of hiding each segment.
      fill_value: a number or one value per feature (the dataset's mean feature).
      seed: None or a Python int.
      **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
      inputs: `[B, T, D]` features or `[B, T, H, W, C]` frames.
      mask: optional `[B, T]`, True (or 1) on real frames.
      training: hide only when True.

    Output shape: the shape and dtype of `inputs`.
    """

    def __init__(self, segment_lengths=(0, 4, 8, 16), hide_prob=0.5, fill_value=0.0,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        lengths, prob, fill = validate_segment_args(segment_lengths, hide_prob, fill_value)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be None or a Python int; received {seed!r}.")
        self.segment_lengths = lengths
        self.hide_prob = prob
        self.fill_value = fill[0] if len(fill) == 1 else fill
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self._convert_input_args = False

    def call(self, inputs, mask=None, training=False):
        if not training:
            return inputs
        return hide_segments(inputs, self.segment_lengths, self.hide_prob, self.fill_value,
                             seed=self.generator.next(), mask=mask)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return None  # the mask is an explicit input of the model, not a Keras mask

    def get_config(self):
        config = super().get_config()
        config.update({
            "segment_lengths": list(self.segment_lengths),
            "hide_prob": self.hide_prob,
            "fill_value": (list(self.fill_value) if isinstance(self.fill_value, tuple)
                           else self.fill_value),
            "seed": self.seed,
        })
        return config


@keras.saving.register_keras_serializable(package="keras_has")
class MaskedTemporalAverage(keras.layers.Layer):
    """Global average pooling over the real frames of each sequence.

    Call arguments:
      inputs: `[B, T, K]` per-frame scores (the temporal CAM).
      mask: `[B, T]`, 1 on real frames and 0 on padding (at least one real frame).

    Output shape: `[B, K]`, computed in float32.
    """

    def call(self, inputs, mask):
        x = tf.cast(inputs, tf.float32)
        m = tf.cast(mask, tf.float32)[:, :, None]
        total = tf.reduce_sum(x * m, axis=1)
        return total / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])
