"""A model's speed layers replaced by the standard Keras layers they stand for.

keras-has trains with three drop-in layers that compute a standard layer's function
faster (`keras_has.models.fused_batch_norm.BatchNormalization`,
`keras_has.models.pointwise_conv.Conv2D`, `keras_has.models.add_relu.Add` with
`relu=True` in front of an identity `Activation`). A model saved with them needs
keras-has to load. `standard_layers_model(model)` returns the same network, sharing
nothing but the weight values, built from `keras.layers.BatchNormalization`, `Conv2D`,
`Add` and `Activation("relu")` only, so a GAP or Hide-and-Seek model on a
`keras.applications` backbone (or `tiny_gap`) saved from it loads with plain
`keras.saving.load_model`, without keras-has. Layers that have no standard twin (the
Caffe layers of AlexNet / GoogLeNet, the WSOL method layers) are kept.
"""
from __future__ import annotations

import copy

import keras

from keras_has.models.building import walk_tensor_references

__all__ = ["standard_layers_model", "standardize_config"]

# registered name of a speed layer -> the Keras class (in keras.layers) it stands for
_STANDARD = {
    "keras_has>BatchNormalization": "BatchNormalization",
    "keras_has>Conv2D": "Conv2D",
    "keras_has>Add": "Add",
}


def _functional_configs(obj):
    """Yields every functional model config (a dict with a `layers` list) inside `obj`."""
    if isinstance(obj, dict):
        if isinstance(obj.get("layers"), list) and "input_layers" in obj:
            yield obj
        for value in obj.values():
            yield from _functional_configs(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _functional_configs(value)


def _readers(config) -> dict:
    """{layer name: names of the layers that take its output} within one functional config."""
    readers = {layer["name"]: [] for layer in config["layers"]}
    for layer in config["layers"]:
        walk_tensor_references(
            layer.get("inbound_nodes", []),
            lambda tensor, reader=layer["name"]: readers.setdefault(
                tensor["keras_history"][0], []).append(reader))
    return readers


def standardize_config(config) -> int:
    """Rewrites a model config (in place, nested functional models included): every
    speed layer becomes its standard Keras class; an `Add(relu=True)` becomes `Add`
    and its one reader, the identity `Activation` that fusion left, `Activation("relu")`.
    Returns the number of layers rewritten. An `Add(relu=True)` without such a reader
    is kept (it needs keras-has to load)."""
    changed = 0
    for functional in _functional_configs(config):
        layers = {layer["name"]: layer for layer in functional["layers"]}
        readers = None
        for layer in functional["layers"]:
            standard = _STANDARD.get(layer.get("registered_name"))
            if standard is None:
                continue
            inner = layer["config"]
            if standard == "Add" and inner.get("relu"):
                readers = readers if readers is not None else _readers(functional)
                names = readers.get(layer["name"], [])
                reader = layers[names[0]] if len(names) == 1 else None
                if (reader is None or reader["class_name"] != "Activation"
                        or reader["config"].get("activation") != "linear"):
                    continue
                reader["config"]["activation"] = "relu"
            inner.pop("relu", None)
            layer.update(module="keras.layers", class_name=standard, registered_name=None)
            changed += 1
    return changed


def standard_layers_model(model: keras.Model) -> keras.Model:
    """A new model: `model` rebuilt with standard Keras layers in place of the speed
    layers, with a copy of its weights (same names, same outputs), uncompiled (what is
    saved for inference: no optimizer, so no optimizer class is needed to load it).

    Args:
      model: a functional Keras model (e.g. a `keras_has.models` GAP model, possibly
        wrapped by a WSOL method).

    Returns:
      an uncompiled functional model that computes the same function.
    """
    config = copy.deepcopy(model.get_config())
    standardize_config(config)
    rebuilt = model.__class__.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt
