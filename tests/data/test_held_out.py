"""A validation split carved from train (`val_fraction`) and the per-epoch share of hidden
training images (`hiding_share`)."""
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_has import data as D
from keras_has.data import wsol_metadata
from keras_has.data.sources import WsolSource
from tests.helpers import make_wsol_folder

NO_NORM = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def test_held_out_indices_stratified_seeded_and_bounded():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    held = wsol_metadata.held_out_indices(labels, 0.2, seed=3)
    # floor(0.2 * n + 0.5) per class, at least 1 of a class with >= 2 images, never all of them,
    # none of a class with one image.
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 1, 0, 1]
    assert held.tolist() == sorted(held.tolist())
    np.testing.assert_array_equal(held, wsol_metadata.held_out_indices(labels, 0.2, seed=3))
    draws = {tuple(wsol_metadata.held_out_indices(labels, 0.2, seed=s)) for s in range(20)}
    assert len(draws) > 10  # the seed changes the draw


def test_val_fraction_carves_val_from_train(tmp_path):
    root = make_wsol_folder(str(tmp_path / "f"), n_train=20, n_test=4, classes=2)
    whole = WsolSource(root)
    source = WsolSource(root, val_fraction=0.25, val_seed=1)
    assert source.splits == ("test", "train", "val")
    train, val = source.split_metadata("train"), source.split_metadata("val")
    assert (len(train), len(val)) == (14, 6)  # 10 per class: floor(2.5 + 0.5) = 3 each
    assert not set(train.image_ids) & set(val.image_ids)
    assert sorted(train.image_ids + val.image_ids) == sorted(whole.split_metadata("train").image_ids)
    # Each carved image keeps its own label and boxes.
    full = whole.split_metadata("train")
    for part in (train, val):
        for i, image_id in enumerate(part.image_ids):
            j = full.image_ids.index(image_id)
            assert part.labels[i] == full.labels[j]
            np.testing.assert_array_equal(part.boxes(i), full.boxes(j))
    # The loaded examples are the carved ones; the test split is untouched.
    ids = sorted(x["image_id"].numpy().decode() for x in source.load("val"))
    assert ids == sorted(val.image_ids)
    assert source.num_examples("test") == 4
    # Statistics of a carved split are keyed apart from the folder's own train split.
    assert source.stats_location("train")[0] is None
    assert source.stats_location("train")[1] != whole.stats_location("train")[1]


def test_val_fraction_bad_values_name_the_setting(tmp_path):
    root = make_wsol_folder(str(tmp_path / "f"), n_train=8, n_test=2)
    with pytest.raises(ValueError, match=r"val_fraction: expected a fraction in \[0, 1\)"):
        WsolSource(root, val_fraction=1.0)
    os.makedirs(os.path.join(root, "metadata", "val"))
    with open(os.path.join(root, "metadata", "val", "image_ids.txt"), "w") as f:
        f.write("train/0/0.png\n")
    with pytest.raises(ValueError, match="already has a 'val' split"):
        WsolSource(root, val_fraction=0.2)


def test_data_config_val_fraction_checks_and_source_kwargs(tmp_path):
    from keras_has.config import DataConfig

    root = make_wsol_folder(str(tmp_path / "f"), n_train=8, n_test=2)
    config = DataConfig(source=root, val_fraction=0.2, val_seed=4)
    assert config.source_kwargs() == {"val_fraction": 0.2, "val_seed": 4}
    assert DataConfig(source=root).source_kwargs() == {}
    # A run's config.json data section gives the same (evaluation and export read it).
    import dataclasses

    from keras_has.config import source_kwargs

    assert source_kwargs(dataclasses.asdict(config)) == {"val_fraction": 0.2, "val_seed": 4}
    assert source_kwargs({"source": root}) == {}
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(source="synthetic", val_fraction=0.2)
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(source=root, val_fraction=-0.1)


def _constant_folder(root, n=16):
    os.makedirs(os.path.join(root, "images"))
    ids = [f"c{i}.png" for i in range(n)]
    for i in ids:
        cv2.imwrite(os.path.join(root, "images", i), np.full([20, 20, 3], 100, np.uint8))
    meta = os.path.join(root, "metadata", "train")
    os.makedirs(meta)
    for name, rows in (("image_ids", ids), ("class_labels", [f"{i},0" for i in ids]),
                       ("localization", [f"{i},0,0,19,19" for i in ids])):
        with open(os.path.join(meta, name + ".txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root


def test_hiding_share_hides_that_share_of_images(tmp_path):
    # Constant images, mean 0 / std 1: a hidden image is one with zeros.
    root = _constant_folder(str(tmp_path / "const"), n=64)
    hiding = {"grid_sizes": (4,), "hide_prob": 0.5}
    share = tf.Variable(0.0)
    ds = D.make_train_dataset(root, 16, 64, seed=0, hiding=hiding, hiding_share=share,
                              **NO_NORM)

    def hidden_images():
        x, _ = next(iter(ds))
        return (x.numpy() == 0).any(axis=(1, 2, 3))

    assert hidden_images().sum() == 0
    share.assign(1.0)
    # 16 cells at p = 0.5: an image escapes with probability 2**-16.
    assert hidden_images().all()
    share.assign(0.5)
    counts = [hidden_images().sum() for _ in range(4)]
    # Binomial(256, 0.5): 128 +- 8 (sd); 5 sd either side.
    assert 88 <= sum(counts) <= 168
    with pytest.raises(ValueError, match="`hiding_share` needs `hiding`"):
        D.make_train_dataset(root, 16, 8, hiding_share=share, **NO_NORM)


def test_a_training_run_logs_the_share_and_keeps_val_out_of_train(tmp_path, monkeypatch):
    import csv
    import json

    from keras_has.config import DataConfig, HidingConfig, OptimConfig, TrainConfig
    from keras_has.train.trainer import train

    real, caches = D.make_eval_dataset, []

    def spy(*args, **kwargs):  # the evaluation split fits the default eval_cache_mb
        caches.append(kwargs.get("cache"))
        return real(*args, **kwargs)

    monkeypatch.setattr(D, "make_eval_dataset", spy)

    root = make_wsol_folder(str(tmp_path / "f"), n_train=16, n_test=4)
    config = TrainConfig(
        model="tiny_gap", model_kwargs={"widths": (4, 8)}, output_dir=str(tmp_path / "run"),
        epochs=3, data=DataConfig(source=root, image_size=32, batch_size=4, eval_split="val",
                                  val_fraction=0.25),
        hiding=HidingConfig(grid_sizes=(8,), hide_until_epoch=2, hide_anneal=True),
        optim=OptimConfig(optimizer="adam", lr_values=(1e-3,), lr_boundaries=()),
        strategy="one_device", eval_every=0, best_metric="", verbose=0)
    result = train(config)
    assert result.epochs_run == [1, 2, 3]
    assert len(result.epoch_seconds) == 3 and min(result.epoch_seconds) > 0
    with open(tmp_path / "run" / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["hidden_share"]) for r in rows] == [1.0, 0.5, 0.0]
    assert caches == [True]
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["data"]["val_fraction"] == 0.25


def test_a_constant_hide_share_is_a_pipeline_constant_of_the_run(tmp_path, monkeypatch):
    """hide_share < 1 without a schedule: the trainer passes the float itself (no
    variable, no HidingSchedule, no hidden_share column; the run keeps its one
    iterator), and the pipeline hides about that share of each batch."""
    import csv
    import json

    from keras_has.config import DataConfig, HidingConfig, OptimConfig, TrainConfig
    from keras_has.train import trainer

    real, seen = D.make_train_dataset, []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("hiding_share"))
        return real(*args, **kwargs)

    monkeypatch.setattr(D, "make_train_dataset", spy)
    config = TrainConfig(
        model="tiny_gap", model_kwargs={"widths": (4, 8)},
        output_dir=str(tmp_path / "run"), epochs=2,
        data=DataConfig(source=make_wsol_folder(str(tmp_path / "f"), n_train=16, n_test=4),
                        image_size=16, batch_size=8, eval_split=None),
        hiding=HidingConfig(grid_sizes=(4,), hide_share=0.25),
        optim=OptimConfig(optimizer="adam", lr_values=(1e-3,), lr_boundaries=()),
        strategy="one_device", eval_every=0, best_metric="", verbose=0)
    assert trainer.train(config).epochs_run == [1, 2]
    assert seen == [0.25]
    with open(tmp_path / "run" / "training_log.csv") as f:
        assert "hidden_share" not in next(csv.DictReader(f))
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["hiding"]["hide_share"] == 0.25

    root = _constant_folder(str(tmp_path / "const"), n=64)
    ds = real(root, 16, 64, seed=1, hiding={"grid_sizes": (4,), "hide_prob": 0.5},
              hiding_share=0.25, **NO_NORM)
    hidden = sum(int((x.numpy() == 0).any(axis=(1, 2, 3)).sum())
                 for x, _ in ds.repeat().take(4))
    # Binomial(256, 0.25): 64 +- 6.9 (sd); 5 sd either side.
    assert 29 <= hidden <= 99
