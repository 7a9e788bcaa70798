"""keras-has: Hide-and-Seek (Singh & Lee, ICCV 2017) for weakly-supervised localization.

Public API (see docs/architecture.md): `hide_patches`, `HideAndSeek`, `compute_cams`,
and the packages, in the order data flows through them: `config`, `util`, `hiding`,
`data`, `models`, `methods`, `localize`, `train`, `serve`, `experiments`, `temporal`,
`cli`; `localization`, `metrics` and `export` are kept as the former paths of
`localize.boxes`, `localize.metrics` and `serve.export`. Everything is imported on
first use (`keras_has.models.get_model(...)` works after `import keras_has`);
importing the package itself does not import TensorFlow, so scripts can set up
logging first (`keras_has.util.console`).
"""
import importlib as _importlib
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_ATTRIBUTES = {"hide_patches": "keras_has.hiding", "HideAndSeek": "keras_has.hiding",
               "compute_cams": "keras_has.localize.cams"}
_SUBMODULES = ("config", "util", "hiding", "data", "models", "methods", "localize", "train",
               "serve", "experiments", "temporal", "cli", "localization", "metrics", "export")
__all__ = ["hide_patches", "HideAndSeek", "compute_cams", "__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"keras_has.{name}")
    if name in _ATTRIBUTES:
        return getattr(_importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'keras_has' has no attribute {name!r}")
