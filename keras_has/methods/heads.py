"""Small builders shared by the methods that add heads to a model."""
from __future__ import annotations

import keras

from keras_has.models import building as cam_lib

__all__ = ["feature_layer_info", "initializer"]


def feature_layer_info(model, method: str):
    """`(features tensor, channels, dtype policy name, num_classes)` of a keras_has
    model's `cam_features` layer; ValueError naming `method` when it has none."""
    names = {layer.name for layer in model.layers}
    missing = [n for n in (cam_lib.FEATURES_LAYER, cam_lib.CLASSIFIER_LAYER) if n not in names]
    if missing:
        raise ValueError(f"method {method!r}: model {model.name!r} has no layer(s) {missing}; "
                         "expected a keras_has.models model")
    layer = model.get_layer(cam_lib.FEATURES_LAYER)
    features = layer.output
    channels = int(features.shape[-1])
    num_classes = int(model.get_layer(cam_lib.CLASSIFIER_LAYER).kernel.shape[-1])
    return features, channels, layer.dtype_policy.name, num_classes


def initializer(seed, offset: int):
    """Glorot-uniform kernel initializer seeded from `seed + offset` (None: unseeded)."""
    if seed is None:
        return "glorot_uniform"
    return keras.initializers.GlorotUniform(seed=int(seed) * 7919 + offset)
