"""Loading a `.keras` file that keras-has wrote: every custom class it may hold (model
layers, method layers, the optimizer) is registered first."""
from __future__ import annotations

import os

import keras

import keras_has.methods.layers  # noqa: F401  (registers the WSOL method layers)
import keras_has.models  # noqa: F401  (registers the model layers)
import keras_has.train.optimizer  # noqa: F401  (registers L2SGD / L2Adam)

__all__ = ["load_keras_model"]


def load_keras_model(path, compile: bool = False) -> keras.Model:
    """`keras.saving.load_model(path, compile=compile)` with keras-has's classes known."""
    return keras.saving.load_model(os.fspath(path), compile=compile)
