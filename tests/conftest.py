"""Shared test set-up: quiet TensorFlow, the TensorFlow Keras backend, shared-data paths."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_PETS3 = REPO_ROOT.parent / "shared" / "data" / "pets3"


@pytest.fixture
def pets3_root():
    """The real Oxford-IIIT Pet subset beside the repo; skips the test when absent."""
    if not (SHARED_PETS3 / "metadata").is_dir():
        pytest.skip(f"shared data not found at {SHARED_PETS3}")
    return SHARED_PETS3
