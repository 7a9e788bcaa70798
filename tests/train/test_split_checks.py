"""Every split a training run reads is checked before anything is written: a cut-short
image of the evaluated split is named (or skipped with skip_corrupt), and an evaluated
image without a box is named."""
import cv2
import numpy as np
import pytest

from keras_has.config import DataConfig, OptimConfig, TrainConfig
from keras_has.data import MetadataError
from keras_has.train.trainer import train

from tests.helpers import jpeg_with_thumbnail, make_wsol_folder


def _config(root, out, **data):
    return TrainConfig(
        model="tiny_gap", model_kwargs={"widths": (4, 8)}, output_dir=str(out), epochs=1,
        data=DataConfig(source=str(root), image_size=32, batch_size=4, eval_split="test",
                        **data),
        optim=OptimConfig(optimizer="adam", lr_values=(1e-3,), lr_boundaries=()),
        strategy="one_device", eval_every=1, best_metric="", verbose=0)


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "wsol"
    make_wsol_folder(root, n_train=8, n_test=4)
    return root


def _cut_camera_photo_into_test(root):
    """The first test image becomes a camera-style JPEG (EXIF thumbnail) cut to 80%."""
    meta = root / "metadata" / "test"
    first = (meta / "image_ids.txt").read_text().split()[0]
    jpg = first[:-4] + ".jpg"
    rng = np.random.default_rng(0)
    data = jpeg_with_thumbnail(cv2.resize(rng.integers(0, 256, (4, 4, 3), np.uint8), (32, 32)),
                               rng.integers(0, 256, (8, 8, 3), np.uint8))
    (root / "images" / first).unlink()
    (root / "images" / jpg).write_bytes(data[:int(len(data) * 0.8)])
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        path = meta / name
        if path.exists():
            path.write_text(path.read_text().replace(first, jpg))
    return jpg


def test_a_cut_image_of_the_evaluated_split_is_named_before_training(folder, tmp_path):
    jpg = _cut_camera_photo_into_test(folder)
    out = tmp_path / "run"
    with pytest.raises(MetadataError, match=rf"test/image_ids\.txt:1: image .*{jpg}.* is "
                                            "unusable: truncated image"):
        train(_config(folder, out))
    assert not out.exists()  # nothing written
    result = train(_config(folder, out, skip_corrupt=True))
    assert result.epochs_run == [1] and (out / "model.keras").is_file()


def test_an_evaluated_image_without_a_box_is_named_before_training(folder, tmp_path):
    loc = folder / "metadata" / "test" / "localization.txt"
    loc.write_text("".join(loc.read_text().splitlines(keepends=True)[1:]))
    out = tmp_path / "run"
    with pytest.raises(MetadataError, match=r"image '.*' \(line 1 of .*image_ids\.txt\) has no "
                                            "box line"):
        train(_config(folder, out))
    assert not out.exists()
