"""keras-has: Hide-and-Seek (Singh & Lee, ICCV 2017) for weakly-supervised localization.

Public API (see docs/architecture.md):
    hide_patches, HideAndSeek, and the submodules models, data, cam, localization,
    metrics, evaluation, callbacks, visualize, config, training, comparison, export,
    serving, localization_tf, run_folder, predict, temporal
    (imported on first use: `keras_has.models.get_model(...)` works after
    `import keras_has`). Importing the package itself does not import TensorFlow, so
    scripts can set up logging first (`keras_has.console`).
"""
import importlib as _importlib
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_ATTRIBUTES = {"hide_patches": "keras_has.hiding", "HideAndSeek": "keras_has.layers"}
_SUBMODULES = ("console", "models", "data", "cam", "localization", "metrics", "evaluation",
               "callbacks", "visualize", "config", "training", "comparison", "export",
               "serving", "localization_tf", "run_folder", "predict", "temporal",
               "preprocessing", "probe", "methods", "tuning")
__all__ = ["hide_patches", "HideAndSeek", "__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"keras_has.{name}")
    if name in _ATTRIBUTES:
        return getattr(_importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'keras_has' has no attribute {name!r}")
