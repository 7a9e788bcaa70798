"""The built-in synthetic dataset: TFDS builder `keras_has_synthetic` and its generator."""
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_has.data import synthetic as syn

SPLIT_SIZES = {"train": 32, "validation": 8, "test": 8}


def _config(name, seed=0):
    return syn.SyntheticConfig(name=name, image_size=64, train_size=SPLIT_SIZES["train"],
                               validation_size=SPLIT_SIZES["validation"], test_size=SPLIT_SIZES["test"],
                               seed=seed)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _build(data_dir, config):
    builder = syn.KerasHasSynthetic(config=config, data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder


def _examples(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def _tight_box(mask):
    ys, xs = np.nonzero(mask[..., 0])
    return [xs.min(), ys.min(), xs.max(), ys.max()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("synthetic")
    with pytest.MonkeyPatch.context() as mp:
        _no_network(mp)
        builder = _build(data_dir, _config("t32_seed0"))
    return data_dir, builder


def test_registered_under_its_name():
    assert "keras_has_synthetic" in tfds.list_builders()
    assert tfds.builder_cls("keras_has_synthetic") is syn.KerasHasSynthetic
    names = {c.name: c for c in syn.KerasHasSynthetic.BUILDER_CONFIGS}
    assert {names[n].image_size for n in ("s64", "s96", "s128")} == {64, 96, 128}


def test_generates_offline_with_the_feature_contract(built):
    _, builder = built
    info = builder.info
    assert {s: info.splits[s].num_examples for s in syn.SPLITS} == SPLIT_SIZES
    labels = info.features["label"]
    assert labels.num_classes == syn.NUM_CLASSES >= 10 and len(set(labels.names)) == labels.num_classes
    ex = _examples(builder, "test")[0]
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (64, 64, 3)
    assert ex["mask"].dtype == np.uint8 and ex["mask"].shape == (64, 64, 1)
    assert ex["part_mask"].dtype == np.uint8 and ex["part_mask"].shape == (64, 64, 1)
    assert ex["object_box"].dtype == np.int32 and ex["object_box"].shape == (4,)
    assert ex["part_box"].dtype == np.int32 and ex["part_box"].shape == (4,)
    assert ex["image_id"].decode().startswith("test_")


def test_split_sizes_labels_and_ids(built):
    _, builder = built
    ids = set()
    for split, n in SPLIT_SIZES.items():
        examples = _examples(builder, split)
        assert len(examples) == n
        ids |= {e["image_id"] for e in examples}
        if split == "train":  # 32 images, labels dealt round-robin: every class, 3 or 4 times
            counts = np.bincount([e["label"] for e in examples], minlength=syn.NUM_CLASSES)
            assert counts.min() == 3 and counts.max() == 4
    assert len(ids) == sum(SPLIT_SIZES.values())


def test_boxes_are_tight_boxes_of_the_masks(built):
    _, builder = built
    for split in syn.SPLITS:
        for e in _examples(builder, split):
            assert set(np.unique(e["mask"])) == {0, 255} and set(np.unique(e["part_mask"])) == {0, 255}
            assert list(e["object_box"]) == _tight_box(e["mask"])
            assert list(e["part_box"]) == _tight_box(e["part_mask"])
            # The part is part of the object: its mask inside the object mask, its box inside the box.
            assert not np.any((e["part_mask"] > 0) & (e["mask"] == 0))
            ox0, oy0, ox1, oy1 = e["object_box"]
            px0, py0, px1, py1 = e["part_box"]
            assert ox0 <= px0 <= px1 <= ox1 and oy0 <= py0 <= py1 <= oy1
            # The part is small next to the object: its radius is at most 40% of the
            # body's long semi-axis (2000 generated images: at most 33% of the box area).
            part_area = (px1 - px0 + 1) * (py1 - py0 + 1)
            assert part_area < 0.4 * (ox1 - ox0 + 1) * (oy1 - oy0 + 1)


def test_part_pixels_have_the_class_part_colour(built):
    """The ground truth matches the picture: the part mask covers the class's part colour."""
    _, builder = built
    for e in _examples(builder, "train"):
        colour = np.array(syn._CLASSES[e["label"]][1], np.float64)
        pixels = e["image"][e["part_mask"][..., 0] > 0].astype(np.float64)
        # Gaussian noise of std 6 plus clipping at 0/255: the mean stays within a few levels.
        np.testing.assert_allclose(pixels.mean(0), colour, atol=4.0)


def test_same_seed_same_bytes_other_seed_differs(built, tmp_path):
    data_dir, first = built
    again = _build(tmp_path / "again", _config("t32_seed0"))
    other = _build(tmp_path / "other", _config("t32_seed1", seed=1))
    for split in syn.SPLITS:
        shards = sorted(p.name for p in (data_dir / "keras_has_synthetic/t32_seed0/2.0.0").glob(f"*-{split}.*"))
        assert shards
        for name in shards:
            a = (data_dir / "keras_has_synthetic/t32_seed0/2.0.0" / name).read_bytes()
            b = (tmp_path / "again/keras_has_synthetic/t32_seed0/2.0.0" / name).read_bytes()
            assert a == b, f"{name} differs between two builds with the same seed"
    images = lambda b: np.stack([e["image"] for e in sorted(_examples(b, "train"), key=lambda e: e["image_id"])])
    np.testing.assert_array_equal(images(first), images(again))
    assert np.mean(images(first) != images(other)) > 0.5


def test_tfds_load_by_name(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    ds = tfds.load("keras_has_synthetic/tiny", split="validation", data_dir=str(tmp_path))
    assert sum(1 for _ in ds) == 16


def test_body_wears_its_class_pattern_at_the_configured_rate():
    arrays = syn.generate_arrays(3, "train", 500, 64)
    rate = np.mean(arrays["body_class"] == arrays["label"])
    # Binomial(500, 0.8): std 0.018; 4 sigma bounds.
    assert 0.728 < rate < 0.872
    other = arrays["body_class"][arrays["body_class"] != arrays["label"]]
    assert len(np.unique(other)) == syn.NUM_CLASSES  # the other patterns are spread over all classes


def test_generator_is_independent_of_order_and_split():
    a = syn.generate_arrays(5, "test", 6, 64)
    b = syn.generate_arrays(5, "test", 3, 64)
    np.testing.assert_array_equal(a["image"][:3], b["image"])
    c = syn.generate_arrays(5, "validation", 3, 64)
    assert not np.array_equal(c["image"], b["image"])


@pytest.mark.parametrize("size", [64, 96, 128])
def test_object_scale_and_position_vary_with_image_size(size):
    arrays = syn.generate_arrays(0, "train", 40, size)
    boxes = arrays["object_box"]
    assert boxes.min() >= 0 and boxes.max() <= size - 1
    widths = boxes[:, 2] - boxes[:, 0] + 1
    assert widths.min() < 0.6 * widths.max()  # random scale and aspect
    assert np.ptp(boxes[:, 0]) > size / 4  # random position


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="image_size must be an int >= 32, got 16"):
        syn.SyntheticConfig(name="bad", image_size=16)
    with pytest.raises(ValueError, match="test_size must be an int >= 1, got 0"):
        syn.SyntheticConfig(name="bad", test_size=0)
    with pytest.raises(ValueError, match=r"class_id must be in \[0, 10\), got 10"):
        syn.render_example(np.random.default_rng(0), 64, 10)
    with pytest.raises(ValueError, match="split must be one of"):
        syn.generate_arrays(0, "val", 2, 64)
    with pytest.raises(ValueError, match="body_consistency must be in"):
        syn.DesignParams(body_consistency=1.5)


def test_first_use_says_it_generates_not_downloads(tmp_path, capsys):
    from keras_has import data

    data.get_source("synthetic", data_dir=str(tmp_path), config="tiny")
    out = capsys.readouterr()
    assert "generating the built-in dataset (64 images of 64 px, once)" in out.out
    assert "Downloading" not in out.out + out.err
    data.get_source("synthetic", data_dir=str(tmp_path), config="tiny")
    assert "generating" not in capsys.readouterr().out  # once
