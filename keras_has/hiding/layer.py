"""Keras layer wrapping `keras_has.hiding.hide_patches`."""
from __future__ import annotations

import keras

from keras_has.hiding.ops import hide_patches, validate_hiding_args

__all__ = ["HideAndSeek"]


@keras.saving.register_keras_serializable(package="keras_has")
class HideAndSeek(keras.layers.Layer):
    """Hide-and-Seek: hides random S x S grid cells of training images.

    Identity unless called with `training=True` (the paper never hides at test time).
    Each image draws its own S from `grid_sizes`; each cell is hidden independently
    with probability `hide_prob`; hidden pixels take `fill_value` in all channels.
    Works as a model's first layer and inside `tf.data.Dataset.map` (TensorFlow
    backend). Fresh masks on every call; with an integer `seed` the sequence of masks
    is reproducible (a `keras.random.SeedGenerator` is advanced on every call).

    Args:
      grid_sizes: non-empty sequence of non-negative ints; 0 leaves an image whole.
      hide_prob: probability in [0, 1] of hiding each cell.
      fill_value: a number or one value per channel (the dataset mean in the value
        space of the inputs, i.e. 0 for mean-subtracted images).
      seed: None or a Python int seeding the layer's `SeedGenerator`.
      **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape: `[B, H, W, C]` or `[H, W, C]`, float16 / bfloat16 / float32 / uint8.
    Output shape: same shape and dtype as the input.
    """

    def __init__(self, grid_sizes=(16, 32, 44, 56), hide_prob=0.5, fill_value=0.0,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        sizes, prob, fill = validate_hiding_args(grid_sizes, hide_prob, fill_value)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be None or a Python int; received {seed!r}.")
        self.grid_sizes = sizes
        self.hide_prob = prob
        self.fill_value = fill[0] if len(fill) == 1 else fill
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        # Inputs keep their dtype (uint8 stays uint8, bfloat16 stays bfloat16): Keras
        # must not cast them to the layer's compute dtype.
        self._convert_input_args = False

    def call(self, inputs, training=False):
        if not training:
            return inputs
        return hide_patches(
            inputs,
            grid_sizes=self.grid_sizes,
            hide_prob=self.hide_prob,
            fill_value=self.fill_value,
            seed=self.generator.next(),
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_sizes": list(self.grid_sizes),
                "hide_prob": self.hide_prob,
                "fill_value": (
                    list(self.fill_value) if isinstance(self.fill_value, tuple)
                    else self.fill_value
                ),
                "seed": self.seed,
            }
        )
        return config
