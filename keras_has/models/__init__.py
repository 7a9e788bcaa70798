"""Model registry: GAP classifiers whose last conv feature map gives class activation maps.

Every registered model takes normalised float images ``[B, H, W, 3]`` and returns
float32 logits ``[B, num_classes]`` (also under a mixed-precision policy), and has a layer
named ``cam_features`` (last conv feature map ``[B, h, w, C]`` before global average
pooling) and a final ``keras.layers.Dense`` named ``classifier`` (kernel ``[C, K]``).

    >>> from keras_has import models
    >>> model = models.get_model("alexnet_gap", num_classes=200, batch_norm=True)

Mixed precision: pass ``dtype_policy="mixed_bfloat16"`` to build one model in mixed
precision without touching Keras' global policy; ``dtype_policy=None`` (default) uses the
global policy (``keras.config.set_dtype_policy``). The classifier is always float32.
"""
import inspect

from keras_has.models import caffe_layers  # noqa: F401  (registers the custom layers for loading)
from keras_has.models.alexnet_gap import alexnet_gap
from keras_has.models.backbones import inceptionv3_gap, mobilenetv2_gap, resnet50_gap, vgg16_gap
from keras_has.models.folding import fold_batch_norms
from keras_has.models.googlenet_gap import googlenet_gap
from keras_has.models.tiny_gap import tiny_gap

_REGISTRY = {}


def register_model(name, builder=None):
    """Registers ``builder(num_classes, input_shape=None, **kwargs) -> keras.Model`` as ``name``.

    Usable as ``register_model("name", fn)`` or as a decorator ``@register_model("name")``.
    """

    def _register(fn):
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].__name__}")
        _REGISTRY[name] = fn
        return fn

    return _register if builder is None else _register(builder)


for _builder in (alexnet_gap, googlenet_gap, vgg16_gap, resnet50_gap, inceptionv3_gap, mobilenetv2_gap, tiny_gap):
    register_model(_builder.__name__, _builder)


def list_models():
    """Returns the sorted names accepted by ``get_model``."""
    return sorted(_REGISTRY)


def get_model(name, num_classes, input_shape=None, **kwargs):
    """Builds the registered model ``name``.

    Args:
        name: a name from ``list_models()``.
        num_classes: number of classes (positive int).
        input_shape: ``(H, W, 3)`` or None for the model's reference input size.
        **kwargs: model options (e.g. ``batch_norm``, ``weights``, ``dtype_policy``); see
            each builder's docstring.

    Returns:
        A built ``keras.Model`` with layers ``cam_features`` and ``classifier``.

    Raises:
        ValueError: unknown ``name`` (the message lists valid names) or an option the
            model does not accept (the message lists accepted options).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names are: {', '.join(list_models())}")
    builder = _REGISTRY[name]
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", "input_shape")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} does not accept option(s) {unknown}; accepted options: {accepted}")
    return builder(num_classes, input_shape=input_shape, **kwargs)


__all__ = [
    "get_model",
    "list_models",
    "register_model",
    "fold_batch_norms",
    "alexnet_gap",
    "googlenet_gap",
    "vgg16_gap",
    "resnet50_gap",
    "inceptionv3_gap",
    "mobilenetv2_gap",
    "tiny_gap",
]
