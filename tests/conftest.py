"""Shared test set-up: quiet TensorFlow, the TensorFlow Keras backend, shared-data paths."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_PETS3 = REPO_ROOT.parent / "shared" / "data" / "pets3"


@pytest.fixture
def pets3_root():
    """The real Oxford-IIIT Pet subset beside the repo; skips the test when absent."""
    if not (SHARED_PETS3 / "metadata").is_dir():
        pytest.skip(f"shared data not found at {SHARED_PETS3}")
    return SHARED_PETS3


def subprocess_env():
    """Environment of a script run in a subprocess: quiet TF, CPU only, this checkout."""
    env = dict(os.environ)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("TF_CONFIG", None)
    return env


def make_wsol_folder(root, n_train=16, n_test=4, size=32, classes=2, seed=0):
    """A tiny WSOL metadata folder: a bright square of the class's colour channel."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        meta = os.path.join(root, "metadata", split)
        os.makedirs(meta, exist_ok=True)
        lines = {"image_ids": [], "class_labels": [], "image_sizes": [], "localization": []}
        for i in range(n):
            c = i % classes
            img = rng.uniform(0, 60, (size, size, 3)).astype(np.uint8)
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = x0 + size // 3, y0 + size // 3
            img[y0:y1 + 1, x0:x1 + 1, c] = 250
            rel = f"{split}/{c}/{i}.png"
            os.makedirs(os.path.join(root, "images", split, str(c)), exist_ok=True)
            cv2.imwrite(os.path.join(root, "images", rel), img)
            lines["image_ids"].append(rel)
            lines["class_labels"].append(f"{rel},{c}")
            lines["image_sizes"].append(f"{rel},{size},{size}")
            lines["localization"].append(f"{rel},{x0},{y0},{x1},{y1}")
        for name, rows in lines.items():
            with open(os.path.join(meta, name + ".txt"), "w") as f:
                f.write("\n".join(rows) + "\n")
    return root


# A child process that holds a RunLock on argv[1] for a minute (prints "locked" first).
HOLD_LOCK = ("import sys, time\n"
             "from keras_has.run_folder import RunLock\n"
             "with RunLock(sys.argv[1]):\n"
             "    print('locked', flush=True)\n"
             "    time.sleep(60)\n")


@pytest.fixture(scope="module")
def tiny_wsol_folder(tmp_path_factory):
    """A tiny WSOL folder (8 train / 4 test images of 32 px) with its statistics cached."""
    from keras_has import data

    root = make_wsol_folder(str(tmp_path_factory.mktemp("wsol") / "tiny"), n_train=8,
                            n_test=4, size=32)
    data.get_normalization(root)
    return root
