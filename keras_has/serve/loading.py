"""Loading a `.keras` file that keras-has wrote: every custom class it may hold (model
layers, method layers, the optimizer) is registered first, and a file that is not a
Keras model archive (a text file, a cut-short download) is named as such."""
from __future__ import annotations

import os
import zipfile

import keras

import keras_has.methods.layers  # noqa: F401  (registers the WSOL method layers)
import keras_has.models  # noqa: F401  (registers the model layers)
import keras_has.train.optimizer  # noqa: F401  (registers L2SGD / L2Adam)

__all__ = ["check_keras_archive", "load_keras_model", "model_image_size"]


def check_keras_archive(path) -> None:
    """Raises ValueError naming `path` unless it is a complete `.keras` archive (the zip
    file `model.save` writes, holding `config.json`); FileNotFoundError if missing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model_path: expected an existing .keras file, received "
                                f"{path!r} (not found)")
    expected = "model_path: expected a Keras model archive (.keras, written by model.save)"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(8)
        raise ValueError(f"{expected}, received {path!r}, which is not a zip archive (it "
                         f"starts with {head!r}; {os.path.getsize(path)} bytes)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"{expected}, received {path!r}, a damaged or cut-short zip archive "
                         f"({error})") from None
    if damaged is not None:
        raise ValueError(f"{expected}, received {path!r}, a damaged archive (member "
                         f"{damaged!r} fails its checksum)")
    if "config.json" not in names:
        raise ValueError(f"{expected}, received {path!r}, a zip archive without config.json "
                         f"(members: {sorted(names)[:5]})")


def load_keras_model(path, compile: bool = False) -> keras.Model:
    """`keras.saving.load_model(path, compile=compile)` with keras-has's classes known.

    Raises:
      FileNotFoundError / ValueError naming `path` when it is missing, not a `.keras`
      archive, damaged, or holds a model Keras cannot rebuild.
    """
    path = os.fspath(path)
    check_keras_archive(path)
    try:
        return keras.saving.load_model(path, compile=compile)
    except (TypeError, ValueError, KeyError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"model_path: cannot load the Keras model {path!r}: {first}") from error


def model_image_size(model) -> int | None:
    """The square input size a model fixes (`[B, S, S, 3]`), or None when it does not."""
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or len(shape) != 4:
        return None
    height, width = shape[1], shape[2]
    return int(height) if height is not None and height == width else None
