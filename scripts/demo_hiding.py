"""Writes a PNG grid of Hide-and-Seek hidden images: one row per image, columns
original | S=16 | S=32 | S=44 | S=56 | mixed (0, 16, 32, 44, 56) by default.

Input is synthetic (shapes drawn with OpenCV, no downloads) or, with --input_dir, the
first --num_images images found under a folder (e.g. a WSOL metadata root's images/).
Hidden cells take the per-channel mean of the shown images, as in the paper.

Usage:
  python scripts/demo_hiding.py --output=outputs/demo_hiding.png
  python scripts/demo_hiding.py --input_dir=/path/to/images --output=hidden.png
"""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "outputs/demo_hiding.png", "PNG file to write.")
flags.DEFINE_string("input_dir", None, "Folder searched recursively for .jpg/.jpeg/.png "
                    "images; synthetic images when unset.")
flags.DEFINE_integer("num_images", 4, "Rows of the grid.", lower_bound=1)
flags.DEFINE_integer("size", 224, "Images are resized to size x size.", lower_bound=8)
flags.DEFINE_list("grid_sizes", ["16", "32", "44", "56"],
                  "One column per grid size, then one column for the mixed setting.")
flags.DEFINE_float("hide_prob", 0.5, "Probability of hiding each cell.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic images and of the masks.")

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def synthetic_images(num, size, seed):
    """`num` uint8 RGB images: a colour gradient with random ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    images = []
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for _ in range(num):
        base = rng.uniform(0.2, 0.8, size=3)
        image = np.stack([np.broadcast_to(ramp[None, :] * base[0], (size, size)),
                          np.broadcast_to(ramp[:, None] * base[1], (size, size)),
                          np.full((size, size), 255 * base[2], np.float32)], axis=-1)
        image = np.ascontiguousarray(image.astype(np.uint8))
        for _ in range(3):
            color = tuple(int(c) for c in rng.integers(0, 256, size=3))
            center = tuple(int(c) for c in rng.integers(size // 5, 4 * size // 5, size=2))
            axes = tuple(int(a) for a in rng.integers(size // 10, size // 3, size=2))
            cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        corner = rng.integers(0, size // 2, size=2)
        cv2.rectangle(image, tuple(int(c) for c in corner),
                      tuple(int(c + size // 4) for c in corner), (255, 255, 255), 3)
        images.append(image)
    return np.stack(images)


def folder_images(root, num, size):
    """The first `num` images (sorted paths) under `root`, RGB uint8, resized."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--input_dir: {root} is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"--input_dir: no {'/'.join(_IMAGE_SUFFIXES)} files under {root}")
    images = []
    for path in paths[:num]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"--input_dir: cannot decode image {path}")
        rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2RGB)
        images.append(rgb)
    return np.stack(images)


def hidden_grid(images, grid_sizes, hide_prob, seed):
    """[rows * H, cols * W, 3] uint8 grid: original, one column per size, then mixed."""
    import keras_has  # after flags are parsed, so --help stays fast

    fill = tuple(float(v) for v in images.reshape(-1, 3).mean(axis=0))
    columns = [images]
    settings = [(s,) for s in grid_sizes] + [(0,) + tuple(grid_sizes)]
    for i, sizes in enumerate(settings):
        hidden = keras_has.hide_patches(images, grid_sizes=sizes, hide_prob=hide_prob,
                                        fill_value=fill, seed=seed + i)
        columns.append(hidden.numpy())
    gap = 4
    rows = []
    for r in range(images.shape[0]):
        tiles = []
        for column in columns:
            tiles += [column[r], np.full((images.shape[1], gap, 3), 255, np.uint8)]
        rows += [np.concatenate(tiles[:-1], axis=1)]
        rows += [np.full((gap, rows[-1].shape[1], 3), 255, np.uint8)]
    return np.concatenate(rows[:-1], axis=0)


def main(argv):
    del argv
    try:
        grid_sizes = [int(s) for s in FLAGS.grid_sizes]
    except ValueError:
        raise app.UsageError(f"--grid_sizes must be integers; received {FLAGS.grid_sizes}")
    if not grid_sizes or any(s <= 0 for s in grid_sizes):
        raise app.UsageError(f"--grid_sizes must be positive integers; received {grid_sizes}")
    if FLAGS.input_dir:
        images = folder_images(FLAGS.input_dir, FLAGS.num_images, FLAGS.size)
    else:
        images = synthetic_images(FLAGS.num_images, FLAGS.size, FLAGS.seed)
    grid = hidden_grid(images, grid_sizes, FLAGS.hide_prob, FLAGS.seed)
    from keras_has.localize.visualize import save_png

    save_png(FLAGS.output, grid)
    sizes = ", ".join(map(str, grid_sizes))
    print(f"wrote {FLAGS.output}: {images.shape[0]} images x (original, S={sizes}, mixed), "
          f"{grid.shape[1]}x{grid.shape[0]}")


if __name__ == "__main__":
    app.run(main)
