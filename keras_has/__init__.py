"""keras-has: Hide-and-Seek (Singh & Lee, ICCV 2017) for weakly-supervised localization.

Public API (see docs/architecture.md):
    hide_patches, HideAndSeek, and the submodules models, data, cam, localization,
    metrics, evaluation, callbacks, config, training, export.
"""
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_has.hiding import hide_patches  # noqa: E402
from keras_has.layers import HideAndSeek  # noqa: E402

__version__ = "0.1.0"
__all__ = ["hide_patches", "HideAndSeek", "__version__"]
