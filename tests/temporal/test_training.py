"""Temporal config, synthetic data, model, one training run and one evaluation (tiny config)."""
import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from keras_has.temporal import build_temporal_gap, cam_model
from keras_has.config.temporal import TemporalConfig
from keras_has.temporal.data import make_dataset, mean_feature
from keras_has.temporal.synthetic import CONFIGS, make_synthetic_source


def test_synthetic_is_deterministic_and_well_formed():
    a = make_synthetic_source("tiny", seed=0)
    b = make_synthetic_source("tiny", seed=0)
    c = make_synthetic_source("tiny", seed=1)
    cfg = CONFIGS["tiny"]
    for split, n, _ in cfg.splits:
        assert len(a.splits[split]) == n
        for va, vb in zip(a.splits[split], b.splits[split]):
            assert va.video_id == vb.video_id and va.segments == vb.segments
            np.testing.assert_array_equal(va.features, vb.features)
    assert not np.array_equal(a.splits["train"][0].features, c.splits["train"][0].features)
    for v in a.splits["train"]:
        assert cfg.min_frames <= v.num_frames <= cfg.max_frames
        assert v.features.shape[1] == cfg.feature_dim and v.features.dtype == np.float32
        assert len(v.labels) == 1 and 1 <= len(v.segments) <= cfg.max_instances
        lo, hi = cfg.instance_frames
        for c_, s, e in v.segments:
            assert c_ == v.labels[0]
            assert lo <= round((e - s) * cfg.feature_rate) <= hi
            assert 0 <= s < e <= v.duration


def test_synthetic_moment_and_body_directions():
    """An instance carries its class's moment direction on a few frames and the body
    direction (with random signs) on the rest; background carries neither."""
    from keras_has.temporal.synthetic import class_directions

    cfg = dataclasses.replace(CONFIGS["default"], noise=0.0,
                              splits=(("train", 20, 0),))
    source = make_synthetic_source(cfg)
    moment, body = class_directions(cfg)
    for v in source.splits["train"]:
        c = v.labels[0]
        inside = np.zeros(v.num_frames, bool)
        for _, s, e in v.segments:
            inside[round(s * cfg.feature_rate):round(e * cfg.feature_rate)] = True
        on_moment = np.isclose(v.features @ moment[c], cfg.moment_strength, atol=1e-4)
        on_body = np.isclose(np.abs(v.features @ body[c]), cfg.body_strength, atol=1e-4)
        assert np.all(~inside <= np.all(v.features == 0, axis=1))  # background is zero
        assert np.array_equal(inside, on_moment | on_body)
        moment_frames = on_moment.sum()
        lo, hi = cfg.moment_frames
        assert lo * len(v.segments) <= moment_frames <= hi * len(v.segments)


def test_config_validation_names_flag_and_value(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"tiou_thresholds: expected numbers in \(0, 1\]"):
        TemporalConfig(output_dir=out, tiou_thresholds=(0.1, 1.5))
    with pytest.raises(ValueError, match="segment_lengths"):
        TemporalConfig(output_dir=out, segment_lengths=(4, -1))
    with pytest.raises(ValueError, match="source: expected an existing feature folder"):
        TemporalConfig(output_dir=out, source=str(tmp_path / "missing"))
    from keras_has.temporal.training import check_temporal_config

    with pytest.raises(ValueError, match="^source_config: expected one of"):
        check_temporal_config(TemporalConfig(output_dir=out, source_config="huge"))
    with pytest.raises(ValueError, match="kernel_size"):
        TemporalConfig(output_dir=out, kernel_size=4)
    cfg = TemporalConfig(output_dir=out, segment_lengths=[0, 4], tiou_thresholds=[0.5])
    assert cfg.hiding_enabled and cfg.segment_lengths == (0, 4)
    again = TemporalConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert not TemporalConfig(output_dir=out, segment_lengths=(0,)).hiding_enabled


def test_model_cam_is_the_gap_decomposition():
    model = build_temporal_gap(3, 4, hidden=8, num_layers=1, seed=0)
    rng = np.random.default_rng(0)
    feats = rng.standard_normal([2, 6, 4]).astype(np.float32)
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2], np.float32)
    feats[1, 4:] = 0
    cam, logits = cam_model(model)({"features": feats, "mask": mask})
    cam, logits = np.asarray(cam), np.asarray(logits)
    assert cam.shape == (2, 6, 3) and logits.shape == (2, 3)
    np.testing.assert_allclose(logits[0], cam[0].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits[1], cam[1, :4].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_model_hiding_only_in_training_and_save_load(tmp_path):
    model = build_temporal_gap(2, 3, hidden=4, num_layers=1, seed=0,
                               hiding={"segment_lengths": (2,), "hide_prob": 1.0,
                                       "fill_value": [0.0, 0.0, 0.0]})
    x = {"features": np.ones([1, 4, 3], np.float32), "mask": np.ones([1, 4], np.float32)}
    eval_a = np.asarray(model(x, training=False))
    eval_b = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(eval_a, eval_b)
    zeros = {"features": np.zeros([1, 4, 3], np.float32), "mask": x["mask"]}
    np.testing.assert_allclose(model(x, training=True), model(zeros, training=False), atol=1e-6)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), eval_a, atol=1e-6)


def test_one_training_run_resume_and_evaluation(tmp_path):
    from keras_has.temporal.evaluation import evaluate_temporal
    from keras_has.temporal.training import train_temporal

    cfg = TemporalConfig(output_dir=str(tmp_path / "run"), source_config="tiny", batch_size=8,
                         epochs=1, hidden=8, segment_lengths=(0, 2, 4), seed=1)
    result = train_temporal(cfg)
    assert result.epochs_run == [1]
    for name in ("config.json", "fill.json", "training_log.csv", "model.keras"):
        assert os.path.exists(os.path.join(result.output_dir, name)), name
    np.testing.assert_allclose(result.fill_value, mean_feature(result.source.splits["train"]))
    assert len(result.history["epoch"]) == 1 and np.isfinite(result.history["loss"][0])
    # The same command again resumes as finished: no epoch runs.
    assert train_temporal(cfg).epochs_run == []
    # A longer run in the same folder continues after the last finished epoch.
    longer = train_temporal(dataclasses.replace(cfg, epochs=2))
    assert longer.epochs_run == [2] and longer.history["epoch"] == [1, 2]
    videos = result.source.splits["test"]
    ev = evaluate_temporal(result.model, videos, result.source.class_names, keep_cams=2)
    m = ev.metrics
    assert sorted(m["map"]) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert all(0.0 <= v <= 100.0 for v in m["map"].values())
    assert 0.0 <= m["classification_map"] <= 100.0 and m["num_videos"] == len(videos)
    assert ev.probs.shape == (len(videos), 3)
    np.testing.assert_allclose(ev.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert set(ev.cams) == {videos[0].video_id, videos[1].video_id}
    assert ev.cams[videos[0].video_id].shape == (videos[0].num_frames, 3)
    for vid, cls, s, e, score in ev.detections:
        assert cls in result.source.class_names and 0 <= s < e and np.isfinite(score)


def test_dataset_batches_pad_and_mask():
    source = make_synthetic_source("tiny")
    videos = source.splits["test"][:5]
    ds = make_dataset(videos, 3, batch_size=2)
    batches = list(ds)
    assert len(batches) == 3 and int(ds.cardinality()) == 3
    longest = max(v.num_frames for v in videos[:2])  # each batch: its own longest video
    x, y = batches[0]
    assert x["features"].shape == (2, longest, source.feature_dim)
    for i, v in enumerate(videos[:2]):
        np.testing.assert_array_equal(x["mask"][i].numpy(),
                                      (np.arange(longest) < v.num_frames).astype(np.float32))
        np.testing.assert_array_equal(x["features"][i, :v.num_frames].numpy(), v.features)
        assert y[i].numpy().argmax() == v.labels[0]


def test_dataset_hiding_in_pipeline_seeded_per_epoch_and_masked():
    source = make_synthetic_source("tiny")
    videos = source.splits["train"][:8]
    hiding = {"segment_lengths": (2,), "hide_prob": 0.5, "fill_value": 100.0}

    def epochs(ds, n):
        it = [[(x["features"].numpy(), x["mask"].numpy()) for x, _ in ds] for _ in range(n)]
        return it

    a = epochs(make_dataset(videos, 3, 4, seed=3, hiding=hiding), 2)
    b = epochs(make_dataset(videos, 3, 4, seed=3, hiding=hiding), 2)
    plain = epochs(make_dataset(videos, 3, 4), 1)[0]
    for (fa, _), (fb, _) in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(fa, fb)  # same seed, same run
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a[0], a[1]))  # fresh per epoch
    for (f, m), (f0, _) in zip(a[0], plain):
        hidden = np.all(f == 100.0, axis=-1)
        assert hidden.any()
        assert not hidden[m == 0].any()  # padding never filled
        np.testing.assert_array_equal(f[~hidden], f0[~hidden])  # the rest untouched


def test_mirrored_strategy_mixed_precision_and_model_hiding(tmp_path):
    from keras_has.temporal.training import train_temporal

    cfg = TemporalConfig(output_dir=str(tmp_path / "run"), source_config="tiny", batch_size=8,
                         epochs=1, hidden=8, segment_lengths=(2,), hide_in="model",
                         strategy="mirrored", mixed_precision="mixed_bfloat16", seed=2)
    result = train_temporal(cfg)
    model = result.model
    assert model.get_layer("temporal_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("cam").compute_dtype == "float32"
    assert model.get_layer("hide_segments").hide_prob == 0.5
    np.testing.assert_allclose(model.get_layer("hide_segments").fill_value,
                               result.fill_value, rtol=1e-6)
    assert np.isfinite(result.history["loss"][0])
    loaded = keras.models.load_model(result.model_path)
    assert loaded.output.dtype == "float32"
    # A fresh process loads the compiled model after importing keras_has.temporal only.
    import subprocess
    import sys

    code = ("import keras_has.temporal, keras; "
            f"m = keras.models.load_model({result.model_path!r}); print(m.loss.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip().endswith("normalized_target_loss")
