"""keras-has: Hide-and-Seek (Singh & Lee, ICCV 2017) for weakly-supervised localization.

Public API (see docs/architecture.md):
    hide_patches, HideAndSeek, and the submodules models, data, cam, localization,
    metrics, evaluation, callbacks, visualize, config, training, comparison, export,
    temporal
    (imported on first use: `keras_has.models.get_model(...)` works after
    `import keras_has`).
"""
import importlib as _importlib
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_has.hiding import hide_patches  # noqa: E402
from keras_has.layers import HideAndSeek  # noqa: E402

__version__ = "0.1.0"

_SUBMODULES = ("models", "data", "cam", "localization", "metrics", "evaluation",
               "callbacks", "visualize", "config", "training", "comparison", "export",
               "temporal")
__all__ = ["hide_patches", "HideAndSeek", "__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"keras_has.{name}")
    raise AttributeError(f"module 'keras_has' has no attribute {name!r}")
