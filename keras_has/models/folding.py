"""Batch norms folded into the convolutions before them, for inference.

At inference a batch norm is a per-channel affine map with fixed statistics,
``y = (x - mean) * gamma / sqrt(var + eps) + beta``. When it directly follows a
convolution (its only consumer), the map folds into that convolution's kernel and bias:
``kernel' = kernel * s`` and ``bias' = (bias - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)`` per output channel. The folded network computes the same
function up to float rounding, with one op per conv-BN pair instead of two, and
TensorFlow's graph optimiser then fuses conv + bias + activation into one oneDNN kernel.
On MobileNetV2 (52 such pairs) that is where most of the inference time went
(docs/design/performance.md).

    >>> from keras_has import models
    >>> model = models.get_model("mobilenetv2_gap", 3, weights="imagenet")
    >>> fast = models.fold_batch_norms(model)    # inference only: same logits and CAMs

Under a mixed-precision policy the folded kernel (computed in float64, stored float32)
is rounded to the compute dtype by the convolution, where the batch norm would have
run in float32 after it: the outputs then agree to that dtype's precision (bfloat16:
about 1e-2 of the activations' scale), not to float32 rounding.

An explicit zero padding in front of a convolution with ``padding="valid"`` (Keras'
MobileNetV2 pads before each strided depthwise convolution) folds too, where it adds
exactly the rows and columns that ``padding="same"`` would at that input size: the
convolution then pads implicitly (same products, no padded copy of the activation).

The copy keeps every layer name (``cam_features``, ``classifier``, the method layers), so
everything that reads the model contract (``keras_has.localize.cams``, evaluation, export) works on
it; the folded batch norms become ``FoldedBatchNorm`` pass-through layers of the same
name, the folded paddings ``FoldedPadding`` ones. It is for inference only: training it
would train convolutions without their batch norms.
"""
from __future__ import annotations

import keras
import numpy as np

__all__ = ["FoldedBatchNorm", "FoldedPadding", "fold_batch_norms", "foldable_pairs",
           "foldable_paddings", "all_layers"]

_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class _FoldedPlace(keras.layers.Layer):
    """The place of a layer folded into a convolution: returns its input.

    Shapes:
        any input -> the same tensor.
    """

    def call(self, inputs, training=None, mask=None):
        return inputs


@keras.saving.register_keras_serializable(package="keras_has")
class FoldedBatchNorm(_FoldedPlace):
    """The place of a batch norm folded into the convolution before it: returns its input."""


@keras.saving.register_keras_serializable(package="keras_has")
class FoldedPadding(_FoldedPlace):
    """The place of a zero padding folded into the convolution after it (which pads
    implicitly instead, ``padding="same"``): returns its input."""


def _single_consumer(layer):
    """The one layer that consumes `layer`'s one output, or None."""
    if len(layer._inbound_nodes) != 1 or len(layer._outbound_nodes) != 1:
        return None
    return layer._outbound_nodes[0].operation


def _conv_before(bn):
    """The convolution whose output only `bn` reads, or None when `bn` cannot fold."""
    if len(bn._inbound_nodes) != 1 or bn.axis not in (-1, 3) or bn.renorm:
        return None
    parents = bn._inbound_nodes[0].parent_nodes
    if len(parents) != 1:
        return None
    conv = parents[0].operation
    if not isinstance(conv, _CONVS) or isinstance(conv, keras.layers.SeparableConv2D):
        return None
    if conv.data_format != "channels_last" or conv.activation is not keras.activations.linear:
        return None
    return conv if _single_consumer(conv) is bn else None


def all_layers(model):
    """Every layer of `model` and of its nested models (input layers aside), depth first,
    in layer order."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def _foldable(model, kind, conv_of):
    """`(layer, conv_of(layer))` for every `kind` layer of `model` (nested models
    included) whose convolution it folds into is not None, in layer order."""
    found = []
    for layer in all_layers(model):
        if isinstance(layer, kind):
            conv = conv_of(layer)
            if conv is not None:
                found.append((layer, conv))
    return found


def _pairs(model):
    """`(convolution, batch norm)` of every pair that folds, in layer order."""
    return [(conv, bn) for bn, conv in
            _foldable(model, keras.layers.BatchNormalization, _conv_before)]


def _same_padding(size, kernel, stride, dilation):
    """``(before, after)`` that ``padding="same"`` adds along one axis of ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _conv_after(pad):
    """The `valid` convolution that alone reads `pad`'s output when the padding is the
    one ``padding="same"`` would add at that input size, else None."""
    conv = _single_consumer(pad)
    if not isinstance(conv, _CONVS) or isinstance(conv, keras.layers.SeparableConv2D):
        return None
    if (pad.data_format != "channels_last" or conv.data_format != "channels_last"
            or conv.padding != "valid" or len(pad._inbound_nodes[0].parent_nodes) != 1):
        return None
    shape = pad._inbound_nodes[0].input_tensors[0].shape  # [B, H, W, C]
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    same = tuple(_same_padding(shape[1 + i], conv.kernel_size[i], conv.strides[i],
                               conv.dilation_rate[i]) for i in range(2))
    return conv if tuple(tuple(p) for p in pad.padding) == same else None


def _paddings(model):
    """`(zero padding, convolution)` of every padding that folds, in layer order."""
    return _foldable(model, keras.layers.ZeroPadding2D, _conv_after)


def foldable_paddings(model) -> list[tuple[str, str]]:
    """`(zero padding name, convolution name)` of every padding `fold_batch_norms`
    folds."""
    return [(pad.name, conv.name) for pad, conv in _paddings(model)]


def foldable_pairs(model) -> list[tuple[str, str]]:
    """`(convolution name, batch norm name)` of every pair `fold_batch_norms` folds."""
    return [(conv.name, bn.name) for conv, bn in _pairs(model)]


def _folded_weights(conv, bn):
    """`[kernel, bias]` of `conv` followed by `bn` at inference (float64 arithmetic)."""
    kernel = np.asarray(conv.kernel.numpy(), np.float64)
    channels = bn.moving_mean.shape[0]
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros(channels)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance.numpy(), np.float64) + bn.epsilon)
    bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros(channels)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        # [kh, kw, C_in, multiplier]; output channel c * multiplier + m.
        kernel = kernel * scale.reshape(1, 1, kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale  # [kh, kw, C_in / groups, C_out]
    dtype = conv.kernel.dtype
    return [kernel.astype(dtype), ((bias - mean) * scale + beta).astype(dtype)]


def fold_batch_norms(model: keras.Model, paddings: bool = True) -> keras.Model:
    """An inference copy of a functional `model` with batch norms folded into convolutions.

    A `BatchNormalization` folds when it normalises the last axis of the output of a
    `Conv2D` or `DepthwiseConv2D` (channels last, no activation of its own) that nothing
    else reads, in `model` or in a functional model nested in it. With `paddings`, a
    `ZeroPadding2D` read only by a `valid` convolution folds into it when it adds what
    ``padding="same"`` would (`foldable_paddings`). Every other layer is copied as it
    is, with its weights; `model` is not changed.

    Args:
      model: a built functional Keras model (e.g. from `keras_has.models.get_model`).
      paddings: also fold zero paddings (the same outputs: the products and their order
        do not change).

    Returns:
      A new model with the same inputs, outputs and layer names; each folded batch norm
      is a `FoldedBatchNorm` of its name, each convolution before one has the folded
      kernel and a bias; each folded padding is a `FoldedPadding`, its convolution
      pads ``same``. `model` itself is returned when nothing folds.

    Raises:
      ValueError: `model` is not a functional model.
    """
    if not hasattr(model, "_run_through_graph") and not isinstance(model, keras.Sequential):
        raise ValueError(f"model: expected a functional Keras model, received "
                         f"{type(model).__name__}")
    pairs = {id(conv): bn for conv, bn in _pairs(model)}
    pads = {id(pad): conv for pad, conv in _paddings(model)} if paddings else {}
    padded = {id(conv) for conv in pads.values()}
    if not pairs and not pads:
        return model
    bns = {id(bn) for bn in pairs.values()}
    convs = {}  # id(new conv) -> (old conv, bn)

    def clone(layer):
        if id(layer) in bns:
            return FoldedBatchNorm(name=layer.name, dtype=layer.dtype_policy.name)
        if id(layer) in pads:
            return FoldedPadding(name=layer.name, dtype=layer.dtype_policy.name)
        config = layer.get_config()
        if id(layer) in pairs:
            config["use_bias"] = True
        if id(layer) in padded:
            config["padding"] = "same"
        new = layer.__class__.from_config(config)
        if id(layer) in pairs:
            convs[id(new)] = (layer, pairs[id(layer)])
        return new

    folded = keras.models.clone_model(model, clone_function=clone, recursive=True)
    old_layers, new_layers = list(all_layers(model)), list(all_layers(folded))
    if [o.name for o in old_layers] != [n.name for n in new_layers]:
        raise RuntimeError("fold_batch_norms: the copy's layers differ from the model's")
    for old, new in zip(old_layers, new_layers):
        if isinstance(new, (keras.Model, _FoldedPlace)):
            continue
        if id(new) in convs:
            new.set_weights(_folded_weights(*convs[id(new)]))
        elif old.weights:
            new.set_weights(old.get_weights())
    return folded
