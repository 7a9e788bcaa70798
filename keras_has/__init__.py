"""keras-has: Hide-and-Seek (Singh & Lee, ICCV 2017) for weakly-supervised localization.

Public API (see docs/architecture.md): `hide_patches`, `HideAndSeek`, `compute_cams`,
`compute_boxes` (classes, scores, maps and boxes of a batch in one call), and the packages, in the order data flows through them: `config`, `util`, `hiding`,
`data`, `models`, `methods`, `localize`, `train`, `serve`, `experiments`, `temporal`,
`cli`; `localization`, `metrics` and `export` are kept as the former paths of
`localize.boxes`, `localize.metrics` and `serve.export`. Everything is imported on
first use (`keras_has.models.get_model(...)` works after `import keras_has`);
importing the package itself does not import TensorFlow, so scripts can set up
logging first (`keras_has.util.console`).

Every class keras-has writes into a `.keras` file is registered with Keras once both
`keras_has` and `keras` are imported (in either order), so `keras.saving.load_model`
opens any model keras-has saved; a GAP or Hide-and-Seek model on a `keras.applications`
backbone or `tiny_gap` is saved with standard Keras layers only and needs no keras-has.
"""
import importlib as _importlib
import importlib.abc as _importlib_abc
import importlib.util as _importlib_util
import os as _os
import sys as _sys

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_ATTRIBUTES = {"hide_patches": "keras_has.hiding", "HideAndSeek": "keras_has.hiding",
               "compute_cams": "keras_has.localize.cams",
               "compute_boxes": "keras_has.localize.localizer"}
_SUBMODULES = ("config", "util", "hiding", "data", "models", "methods", "localize", "train",
               "serve", "experiments", "temporal", "cli", "localization", "metrics", "export")
__all__ = ["hide_patches", "HideAndSeek", "compute_cams", "compute_boxes",
           "register_saved_classes",
           "__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"keras_has.{name}")
    if name in _ATTRIBUTES:
        return getattr(_importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'keras_has' has no attribute {name!r}")


# Modules whose import registers the classes that keras-has saves in .keras files.
_SAVED_CLASS_MODULES = ("keras_has.serve.loading", "keras_has.hiding.layer",
                        "keras_has.methods", "keras_has.temporal.layers",
                        "keras_has.temporal.model")


def register_saved_classes():
    """Registers with Keras every class keras-has writes into `.keras` files (model,
    method and temporal layers, the optimizers); imports TensorFlow."""
    for module in _SAVED_CLASS_MODULES:
        _importlib.import_module(module)


def _product_import_in_progress() -> bool:
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(_sys.modules.items())
               if name == "keras_has" or name.startswith("keras_has."))


class _RegisterAfterKeras(_importlib_abc.MetaPathFinder):
    """Runs `register_saved_classes` right after `import keras` completes, unless the
    import came from keras-has's own modules (which register what they define)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        _sys.meta_path.remove(self)
        spec = _importlib_util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            if not _product_import_in_progress():
                register_saved_classes()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in _sys.modules:
    register_saved_classes()
elif not any(isinstance(finder, _RegisterAfterKeras) for finder in _sys.meta_path):
    _sys.meta_path.insert(0, _RegisterAfterKeras())
