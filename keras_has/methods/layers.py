"""Keras layers the WSOL methods insert into a model (registered for `.keras` loading).

- `AttentionDropout` (ADL): inserted after backbone blocks; identity at inference.
- `AcolErase` (ACoL): erases the features where branch A's CAM is high.
- `MethodHead` subclasses `AcolHead` and `SpgHead`: the model's last layer for methods
  with extra heads. They return the main logits unchanged, add the method's auxiliary
  losses during training (`add_loss`) and record in their config how the method's CAM
  is computed (`cam_branches`, `cam_fusion`), so that a reloaded model gives its
  method's CAM through `keras_has.localize.cams` (see docs/design/methods.md).

The layers that need the ground truth in training (`AcolErase`, `MethodHead`) take it
as an explicit call argument `labels` (int `[B]`); `keras_has.methods.training` wires a
labels input to them (`takes_labels`). Without labels (inference, evaluation, export)
they use the top-1 class and add no loss.
"""
from __future__ import annotations

import inspect

import keras
import tensorflow as tf

from keras_has.methods import ops

_PACKAGE = "keras_has_methods"

__all__ = ["AttentionDropout", "AcolErase", "MethodHead", "AcolHead", "SpgHead",
           "find_method_head", "takes_labels"]


def takes_labels(layer) -> bool:
    """Whether `layer.call` has a `labels` argument (the training graph passes the
    step's ground-truth classes there)."""
    return "labels" in inspect.signature(layer.call).parameters


def _check_fraction(layer: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{layer}: `{name}` must be a number in [0, 1], received {value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionDropout(keras.layers.Layer):
    """Attention-based dropout layer (ADL, Choe & Shim, CVPR 2019).

    Training: per call one uniform draw decides, for the whole batch, between the drop
    mask (probability `drop_rate`: the region where the channel-mean attention is at
    least `threshold` times its per-image max is zeroed) and the importance map
    (`sigmoid` of the attention); the input is multiplied by the chosen map
    (`keras_has.methods.ops.adl_select`). Inference: identity.

    Args:
      drop_rate: probability of the drop mask, in [0, 1] (wsolevaluation: 0.75).
      threshold: gamma, fraction of the attention max, in [0, 1] (wsolevaluation: 0.9).
      seed: None or an int fixing the draws.

    Shapes: `[B, h, w, C]` -> `[B, h, w, C]`.
    """

    def __init__(self, drop_rate=0.75, threshold=0.9, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.drop_rate = _check_fraction("AttentionDropout", "drop_rate", drop_rate)
        self.threshold = _check_fraction("AttentionDropout", "threshold", threshold)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        uniform = keras.random.uniform([], seed=self.seed_generator)
        return ops.adl_select(inputs, self.threshold, self.drop_rate, uniform)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(drop_rate=self.drop_rate, threshold=self.threshold, seed=self.seed)
        return config


def _labels_or_top1(class_maps: tf.Tensor, labels) -> tf.Tensor:
    """The classes a method layer uses: `labels` when given, else the top-1 class of
    `GAP(class_maps)` (= the branch's logits)."""
    if labels is not None:
        return tf.cast(labels, tf.int32)
    logits = tf.reduce_mean(tf.cast(class_maps, tf.float32), axis=[1, 2])
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def _pick(class_maps: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """`class_maps[b, :, :, classes[b]]` -> `[B, h, w]` float32."""
    maps = tf.cast(class_maps, tf.float32)
    return tf.gather(tf.transpose(maps, [0, 3, 1, 2]), classes, axis=1, batch_dims=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AcolErase(keras.layers.Layer):
    """ACoL's adversarial erasing: features times `acol_erase_mask` of branch A's CAM.

    Inputs `[features [B, h, w, C], class_maps [B, h, w, K]]` (branch A's per-pixel
    logits) and, in training, `labels` int `[B]`; the CAM is the map of the label, of
    the top-1 class when `labels` is None; the mask carries no gradient. Returns the
    erased features `[B, h, w, C]`.

    Args:
      threshold: `acol_threshold` in [0, 1] (wsolevaluation: 0.7).
    """

    def __init__(self, threshold=0.7, **kwargs):
        super().__init__(**kwargs)
        self.threshold = _check_fraction("AcolErase", "threshold", threshold)

    def call(self, inputs, labels=None):
        features, class_maps = inputs
        cams = _pick(tf.stop_gradient(class_maps), _labels_or_top1(class_maps, labels))
        mask = tf.stop_gradient(ops.acol_erase_mask(cams, self.threshold))
        return features * tf.cast(mask, features.dtype)[..., None]

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold)
        return config


class MethodHead(keras.layers.Layer):
    """Base of a method's last layer: returns its first input (the main logits) as
    float32 and, in training with `labels` (int `[B]`) given, adds
    `aux_loss(inputs, labels)` with `add_loss`; without labels it adds nothing.

    Args:
      method: the method's registry name.
      cam_branches: `[[features_layer, classifier_layer], ...]`: the CAM of class `k`
        of branch `i` is `features_i . classifier_i.kernel[:, k]` (bias excluded).
      cam_fusion: "single" (one branch) or "max_normalized" (the per-class maximum of
        the branches' min-max normalised CAMs, wsolevaluation's ACoL rule).
    """

    def __init__(self, method, cam_branches=(("cam_features", "classifier"),),
                 cam_fusion="single", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if cam_fusion not in ("single", "max_normalized"):
            raise ValueError(f"{type(self).__name__}: `cam_fusion` must be 'single' or "
                             f"'max_normalized', received {cam_fusion!r}")
        self.method = str(method)
        self.cam_branches = [list(b) for b in cam_branches]
        self.cam_fusion = cam_fusion

    def call(self, inputs, labels=None, training=None):
        logits = tf.cast(inputs[0], tf.float32)
        if training and labels is not None:
            self.add_loss(tf.cast(self.aux_loss(inputs, labels), tf.float32))
        return logits

    def aux_loss(self, inputs, labels):  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        config = super().get_config()
        config.update(method=self.method, cam_branches=self.cam_branches,
                      cam_fusion=self.cam_fusion)
        return config


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AcolHead(MethodHead):
    """ACoL's last layer. Inputs `[logits_a [B, K], logits_b [B, K]]`; returns logits_a;
    training adds `CE(logits_b, labels)` (wsolevaluation's loss is the sum of both
    branches' cross-entropies; branch A's is the method's classification loss)."""

    def aux_loss(self, inputs, labels):
        return _cross_entropy(labels, inputs[1])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpgHead(MethodHead):
    """SPG's last layer. Inputs `[logits [B, K], class_maps [B, h, w, K], b1, b2, c]`
    (the side branches' one-channel logit maps `[B, h, w, 1]`); returns logits.

    Training adds wsolevaluation's three guidance losses, every map bilinearly
    upsampled to `image_size`: `b2` against the mask of the label's min-max normalised
    CAM at thresholds pair 1; `b1` against the mask of `sigmoid(b2)` at pair 2; `c`
    against the mask of `(sigmoid(b1) + sigmoid(b2)) / 2` at pair 3 (masks carry no
    gradient; `keras_has.methods.ops.spg_guidance_mask`, masked BCE).

    Args:
      thresholds: `((h1, l1), (h2, l2), (h3, l3))` in [0, 1].
      image_size: `(H, W)` the maps are upsampled to.
    """

    def __init__(self, thresholds=((0.7, 0.01), (0.5, 0.05), (0.7, 0.1)),
                 image_size=(224, 224), **kwargs):
        kwargs.setdefault("method", "spg")
        super().__init__(**kwargs)
        pairs = [list(p) for p in thresholds]
        if len(pairs) != 3 or any(len(p) != 2 for p in pairs):
            raise ValueError(f"SpgHead: `thresholds` must be three (high, low) pairs, "
                             f"received {thresholds!r}")
        for i, (high, low) in enumerate(pairs, start=1):
            _check_fraction("SpgHead", f"threshold_{i}h", high)
            _check_fraction("SpgHead", f"threshold_{i}l", low)
        self.thresholds = [[float(h), float(lo)] for h, lo in pairs]
        self.image_size = [int(s) for s in image_size]

    def _up(self, maps):
        return tf.image.resize(tf.cast(maps, tf.float32), self.image_size,
                               method="bilinear")[..., 0]

    def aux_loss(self, inputs, labels):
        _, class_maps, b1, b2, c = inputs
        height, width = self.image_size
        min_fg = ops.spg_min_fg_pixels(height, width)
        (h1, l1), (h2, l2), (h3, l3) = self.thresholds
        cam = self._up(_pick(tf.stop_gradient(class_maps), tf.cast(labels, tf.int32))[..., None])
        attention = ops.minmax_normalize(cam)
        b1, b2, c = self._up(b1), self._up(b2), self._up(c)
        b1_prob = tf.stop_gradient(tf.sigmoid(b1))
        b2_prob = tf.stop_gradient(tf.sigmoid(b2))
        loss = masked_loss(b2, attention, h1, l1, min_fg)
        loss += masked_loss(b1, b2_prob, h2, l2, min_fg)
        loss += masked_loss(c, (b1_prob + b2_prob) / 2.0, h3, l3, min_fg)
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(thresholds=self.thresholds, image_size=self.image_size)
        return config


def masked_loss(logits, attention, high, low, min_fg):
    target, valid = ops.spg_guidance_mask(attention, high, low, min_fg)
    return ops.masked_bce_with_logits(logits, target, valid)


def find_method_head(model) -> MethodHead | None:
    """The model's `MethodHead` layer (None for models whose CAM is the plain
    `cam_features . classifier` rule)."""
    heads = [layer for layer in getattr(model, "layers", []) if isinstance(layer, MethodHead)]
    if len(heads) > 1:
        raise ValueError(f"model {model.name!r} has {len(heads)} method heads "
                         f"{[h.name for h in heads]}; expected at most one")
    return heads[0] if heads else None
