"""WSOL methods behind one seam: `cam`, `has`, `acol`, `spg`, `adl`, `cutmix`.

    >>> from keras_has import methods
    >>> methods.list_methods()
    ['acol', 'adl', 'cam', 'cutmix', 'has', 'spg']
    >>> method = methods.get_method("acol")          # default hyperparameters
    >>> method = methods.from_config(config.wsol)    # a TrainConfig's method

A method declares only what it changes (`keras_has.methods.base.Method`); the
trainer calls `method.build`, `method.pipeline_hiding`, `method.loss` and
`prepare_training`, and everything that computes CAMs goes through `keras_has.cam`,
which reads the rule recorded in the model (`keras_has.methods.layers.MethodHead`).
See docs/design/methods.md.
"""
from keras_has.methods import layers  # noqa: F401  (registers the layers for loading)
from keras_has.methods.acol import Acol
from keras_has.methods.adl import Adl
from keras_has.methods.base import Method, prepare_training
from keras_has.methods.cam import Cam
from keras_has.methods.cutmix import CutMix
from keras_has.methods.has import HideAndSeek
from keras_has.methods.spg import Spg

_REGISTRY = {cls.name: cls for cls in (Cam, HideAndSeek, Acol, Spg, Adl, CutMix)}

__all__ = ["Method", "get_method", "list_methods", "from_config", "prepare_training",
           "title_of"]


def list_methods():
    """The sorted names `get_method` accepts."""
    return sorted(_REGISTRY)


def get_method(name, config=None) -> Method:
    """The method `name` with the hyperparameters of `config` (a
    `keras_has.config.MethodConfig`; None: the defaults).

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"method: expected one of {list_methods()}, received {name!r}")
    return _REGISTRY[name](config)


def from_config(method_config) -> Method:
    """The method a `MethodConfig` names, with its hyperparameters."""
    return get_method(method_config.method, method_config)


def title_of(name: str) -> str:
    """The display title of method `name` (the name itself when unknown)."""
    cls = _REGISTRY.get(name)
    return cls.title if cls is not None else name
