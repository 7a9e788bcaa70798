"""WSOL methods behind one seam: `cam`, `has`, `acol`, `spg`, `adl`, `cutmix`.

    >>> from keras_has import methods
    >>> methods.list_methods()
    ['acol', 'adl', 'cam', 'cutmix', 'has', 'spg']
    >>> method = methods.get_method("acol")          # default hyperparameters
    >>> method = methods.from_config(config.wsol)    # a TrainConfig's method

A method declares only what it changes (`keras_has.methods.base.Method`); the
trainer calls `method.build` and `method.pipeline_hiding` and fits a
`TrainingModel(model, method, seed)` (`keras_has.methods.training`: the labels are an
input of the training graph, the batch augmentation and the loss are the method's).
Everything that computes CAMs goes through `keras_has.localize.cams`, which reads the
rule recorded in the model (`keras_has.methods.layers.MethodHead`).
See docs/design/methods.md.
"""
from __future__ import annotations

import importlib

# name -> (module of keras_has.methods, class); imported on first use, so that listing
# and validating names (config construction) imports no TensorFlow.
_REGISTRY = {
    "cam": ("cam", "Cam"),
    "has": ("has", "HideAndSeek"),
    "acol": ("acol", "Acol"),
    "spg": ("spg", "Spg"),
    "adl": ("adl", "Adl"),
    "cutmix": ("cutmix", "CutMix"),
}

__all__ = ["Method", "TrainingModel", "get_method", "list_methods", "from_config",
           "title_of"]


def __getattr__(name):
    if name == "Method":
        return getattr(importlib.import_module("keras_has.methods.base"), name)
    if name == "TrainingModel":
        return getattr(importlib.import_module("keras_has.methods.training"), name)
    if name in ("layers", "ops", "base", "training"):
        return importlib.import_module(f"keras_has.methods.{name}")
    raise AttributeError(f"module 'keras_has.methods' has no attribute {name!r}")


def _class(name):
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(f"keras_has.methods.{module}"), cls)


def list_methods():
    """The sorted names `get_method` accepts."""
    return sorted(_REGISTRY)


def get_method(name, config=None) -> "Method":
    """The method `name` with the hyperparameters of `config` (a
    `keras_has.config.MethodConfig`; None: the defaults).

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"method: expected one of {list_methods()}, received {name!r}")
    return _class(name)(config)


def from_config(method_config) -> "Method":
    """The method a `MethodConfig` names, with its hyperparameters."""
    return get_method(method_config.method, method_config)


def title_of(name: str) -> str:
    """The display title of method `name` (the name itself when unknown)."""
    return _class(name).title if name in _REGISTRY else name
