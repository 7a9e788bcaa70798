"""Shared test set-up: quiet TensorFlow, the TensorFlow Keras backend, shared-data paths."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from tests.helpers import REPO_ROOT, make_wsol_folder  # noqa: E402

SHARED_PETS3 = REPO_ROOT.parent / "shared" / "data" / "pets3"


@pytest.fixture
def pets3_root():
    """The real Oxford-IIIT Pet subset beside the repo; skips the test when absent."""
    if not (SHARED_PETS3 / "metadata").is_dir():
        pytest.skip(f"shared data not found at {SHARED_PETS3}")
    return SHARED_PETS3


@pytest.fixture(scope="module")
def tiny_wsol_folder(tmp_path_factory):
    """A tiny WSOL folder (8 train / 4 test images of 32 px) with its statistics cached."""
    from keras_has import data

    root = make_wsol_folder(str(tmp_path_factory.mktemp("wsol") / "tiny"), n_train=8,
                            n_test=4, size=32)
    data.get_normalization(root)
    return root
