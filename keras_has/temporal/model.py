"""Temporal GAP classifier over per-frame features, and its temporal CAM.

`[B, T, D]` features (and a `[B, T]` mask of real frames) -> optional hiding in time ->
`num_layers` x (Conv1D `kernel_size`, ReLU, dropout) -> Conv1D 1x1 to `K` classes (the
temporal class activation map, layer `cam`) -> average over the real frames (`gap`) ->
video-level logits. GAP then a linear classifier equals a 1x1 classifier then GAP, so
the `cam` layer's output is exactly the per-frame CAM of the image side
(`sum_d w_{k,d} f_{t,d}` plus the bias).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_has.temporal.layers import MaskedTemporalAverage, TemporalHideAndSeek

__all__ = ["build_temporal_gap", "cam_model", "normalized_target_loss"]


def build_temporal_gap(num_classes, feature_dim, hidden=64, num_layers=2, kernel_size=3,
                       dropout=0.0, hiding=None, seed=0, dtype_policy=None):
    """Builds the temporal GAP model (functional, named layers).

    Args:
      num_classes: K >= 1.
      feature_dim: D, the per-frame feature size.
      hidden: channels of each temporal conv layer.
      num_layers: temporal conv layers before the CAM layer (0 = a linear CAM).
      kernel_size: odd temporal kernel size of those layers.
      dropout: dropout rate after each conv layer.
      hiding: None (baseline) or a dict with `segment_lengths`, `hide_prob` and
        `fill_value`: a `TemporalHideAndSeek` layer on the input (training only).
      seed: seeds initialisation, dropout and the hiding layer.
      dtype_policy: None or a Keras dtype policy name (e.g. `mixed_bfloat16`); the CAM
        and the pooled logits are float32 either way.

    Inputs: `{"features": [B, T, D] float32, "mask": [B, T] float32 (1 real, 0 pad)}`.
    Output: logits `[B, K]` float32.
    """
    for name, value, low in (("num_classes", num_classes, 1), ("feature_dim", feature_dim, 1),
                             ("hidden", hidden, 1), ("num_layers", num_layers, 0),
                             ("kernel_size", kernel_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, received {value!r}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: expected an odd size, received {kernel_size}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a rate in [0, 1), received {dropout!r}")
    policy = dtype_policy
    features = keras.Input((None, feature_dim), name="features")
    mask = keras.Input((None,), name="mask")
    x = features
    if hiding:
        x = TemporalHideAndSeek(hiding["segment_lengths"], hiding["hide_prob"],
                                hiding.get("fill_value", 0.0), seed=seed,
                                name="hide_segments")(x, mask=mask)
    for i in range(num_layers):
        x = keras.layers.Conv1D(
            hidden, kernel_size, padding="same", activation="relu", name=f"temporal_conv{i + 1}",
            kernel_initializer=keras.initializers.HeNormal(seed=seed + i), dtype=policy)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed + 100 + i, name=f"dropout{i + 1}",
                                     dtype=policy)(x)
    cam = keras.layers.Conv1D(
        num_classes, 1, name="cam", dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1000))(x)
    logits = MaskedTemporalAverage(name="gap", dtype="float32")(cam, mask)
    return keras.Model({"features": features, "mask": mask}, logits, name="temporal_gap")


def cam_model(model):
    """A model with the same inputs that returns `(cam [B, T, K], logits [B, K])`."""
    return keras.Model(model.inputs, [model.get_layer("cam").output, model.output],
                       name=f"{model.name}_cam")


@keras.saving.register_keras_serializable(package="keras_has")
def normalized_target_loss(y_true, logits):
    """Softmax cross-entropy against `y_true / sum(y_true)` (multi-hot video labels).

    Registered with Keras (and defined here, imported with `keras_has.temporal`) so a
    saved, compiled `model.keras` loads after `import keras_has.temporal`.
    """
    y = tf.cast(y_true, tf.float32)
    y = y / tf.maximum(tf.reduce_sum(y, axis=-1, keepdims=True), 1.0)
    return tf.nn.softmax_cross_entropy_with_logits(y, tf.cast(logits, tf.float32))
