"""Plain helpers shared by the tests (the fixtures are in conftest.py): the repository
root, a subprocess environment for this checkout, a tiny WSOL folder made on disk and
a child process that holds a run folder's lock."""
import os
import pathlib

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


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
             "from keras_has.train.run_folder import RunLock\n"
             "with RunLock(sys.argv[1]):\n"
             "    print('locked', flush=True)\n"
             "    time.sleep(60)\n")


def jpeg_with_thumbnail(image, thumbnail):
    """JPEG bytes of `image` (uint8 [H, W, 3]) carrying `thumbnail` as a camera does: a
    complete JPEG, with its own end marker (FF D9), inside an APP1 'Exif' segment."""
    import cv2

    main = cv2.imencode(".jpg", image)[1].tobytes()
    thumb = cv2.imencode(".jpg", thumbnail)[1].tobytes()
    payload = b"Exif\x00\x00" + bytes(8) + thumb
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    return main[:2] + app1 + main[2:]
