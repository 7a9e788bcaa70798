"""TrainConfig validation: each bad value fails at construction, naming the flag."""
import dataclasses
import json
import os

import pytest

from keras_has import config as cfg
from keras_has import data as data_mod
from keras_has import models as models_mod


@pytest.fixture(autouse=True)
def registries(monkeypatch):
    """Stand-ins only while keras_has.models / keras_has.data lack their registries."""
    if not hasattr(models_mod, "list_models"):
        monkeypatch.setattr(models_mod, "list_models",
                            lambda: ["tiny_gap", "alexnet_gap", "googlenet_gap"], raising=False)
    if not hasattr(data_mod, "list_sources"):
        monkeypatch.setattr(data_mod, "list_sources", lambda: ["synthetic"], raising=False)


def make(tmp_path, **overrides):
    data = overrides.pop("data", {})
    hiding = overrides.pop("hiding", {})
    optim = overrides.pop("optim", {})
    kwargs = dict(model="tiny_gap", output_dir=str(tmp_path / "run"))
    kwargs.update(overrides)
    return cfg.TrainConfig(data=cfg.DataConfig(**data), hiding=cfg.HidingConfig(**hiding),
                           optim=cfg.OptimConfig(**optim), **kwargs)


def test_defaults_are_the_papers_schedule(tmp_path):
    c = make(tmp_path)
    assert c.optim.lr_values == (1e-2, 5e-3, 1e-3, 5e-4, 1e-4)
    assert c.optim.lr_boundaries == (18, 29, 43, 52)
    assert c.optim.momentum == 0.9 and c.optim.weight_decay == 5e-4
    assert c.optim.weight_decay_until_epoch == 29 and c.epochs == 55
    assert not c.hiding.enabled and c.hiding.as_pipeline_arg() is None
    assert not (tmp_path / "run").exists()  # construction creates nothing


@pytest.mark.parametrize("overrides, flag", [
    (dict(model=""), "model"),
    (dict(data=dict(source="")), "source"),
    (dict(data=dict(source="/definitely/not/here/ILSVRC")), "source"),
    (dict(data=dict(data_dir="/definitely/not/here")), "data_dir"),
    (dict(data=dict(image_size=0)), "image_size"),
    (dict(data=dict(batch_size=-4)), "batch_size"),
    (dict(data=dict(global_batch_size=0)), "global_batch_size"),
    (dict(hiding=dict(hide_prob=1.5, grid_sizes=(32,))), "hide_prob"),
    (dict(hiding=dict(hide_prob=-0.1, grid_sizes=(32,))), "hide_prob"),
    (dict(hiding=dict(hide_prob=float("nan"), grid_sizes=(32,))), "hide_prob"),
    (dict(hiding=dict(grid_sizes=(16, -32))), "grid_sizes"),
    (dict(hiding=dict(grid_sizes=(16, 16))), "grid_sizes"),
    (dict(hiding=dict(grid_sizes=(16.5,))), "grid_sizes"),
    (dict(hiding=dict(grid_sizes="16,32")), "grid_sizes"),
    (dict(optim=dict(momentum=1.0)), "momentum"),
    (dict(optim=dict(lr_values=(1e-2, 1e-3))), "lr_values"),
    (dict(optim=dict(lr_values=(1e-2, 0.0, 1e-3, 1e-4, 1e-5))), "lr_values"),
    (dict(optim=dict(lr_boundaries=(18, 18, 43, 52))), "lr_boundaries"),
    (dict(optim=dict(weight_decay=-1e-4)), "weight_decay"),
    (dict(optim=dict(weight_decay_until_epoch=-1)), "weight_decay_until_epoch"),
    (dict(optim=dict(schedule_reference_epochs=-5)), "schedule_reference_epochs"),
    (dict(epochs=0), "epochs"),
    (dict(steps_per_epoch=-1), "steps_per_epoch"),
    (dict(strategy="horovod"), "strategy"),
    (dict(tpu="grpc://10.0.0.1:8470"), "tpu"),
    (dict(mixed_precision="float8"), "mixed_precision"),
    (dict(seed=-1), "seed"),
    (dict(eval_every=-2), "eval_every"),
    (dict(best_mode="biggest"), "best_mode"),
    (dict(best_metric="val_loss", data=dict(eval_split="")), "best_metric"),
    (dict(verbose=3), "verbose"),
])
def test_bad_values_fail_naming_the_flag(tmp_path, overrides, flag):
    with pytest.raises(ValueError) as info:
        make(tmp_path, **overrides)
    message = str(info.value)
    assert message.startswith(f"{flag}:"), message
    assert "expected" in message and "received" in message
    assert not (tmp_path / "run").exists()


def test_source_path_must_be_a_wsol_folder(tmp_path):
    folder = tmp_path / "ILSVRC"
    folder.mkdir()
    with pytest.raises(ValueError, match="^source: .*metadata"):
        make(tmp_path, data=dict(source=str(folder)))
    (folder / "metadata").mkdir()
    assert make(tmp_path, data=dict(source=str(folder))).data.source == str(folder)


def test_output_dir_that_is_a_file_fails(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(ValueError, match="^output_dir:"):
        make(tmp_path)


def test_global_batch_must_divide_by_replicas(tmp_path):
    c = make(tmp_path, data=dict(batch_size=8))
    assert c.per_replica_batch(1) == (8, 8)
    assert c.per_replica_batch(4) == (8, 32)
    g = make(tmp_path, data=dict(global_batch_size=30))
    assert g.per_replica_batch(3) == (10, 30)
    with pytest.raises(ValueError, match=r"^global_batch_size: .*multiple of the 4 replicas.*30"):
        g.per_replica_batch(4)


def test_hiding_enabled_and_pipeline_arg(tmp_path):
    c = make(tmp_path, hiding=dict(grid_sizes=[16, 32, 44, 56], hide_prob=0.5))
    assert c.hiding.grid_sizes == (16, 32, 44, 56)
    assert c.hiding.as_pipeline_arg() == {"grid_sizes": (16, 32, 44, 56), "hide_prob": 0.5}
    assert not make(tmp_path, hiding=dict(grid_sizes=[32], hide_prob=0.0)).hiding.enabled
    assert not make(tmp_path, hiding=dict(grid_sizes=[0])).hiding.enabled


def test_hidden_share_per_epoch():
    plain = cfg.HidingConfig(grid_sizes=(16,))
    assert not plain.scheduled and [plain.hidden_share(e) for e in (1, 5, 99)] == [1, 1, 1]
    window = cfg.HidingConfig(grid_sizes=(16,), hide_from_epoch=3, hide_until_epoch=7)
    assert window.scheduled
    assert [window.hidden_share(e) for e in range(1, 10)] == [0, 0, 1, 1, 1, 1, 1, 0, 0]
    # Linear over epochs 3..6 (n = 4): 1, 3/4, 1/2, 1/4, then none.
    anneal = cfg.HidingConfig(grid_sizes=(16,), hide_from_epoch=3, hide_until_epoch=6,
                              hide_anneal=True)
    assert [anneal.hidden_share(e) for e in range(1, 9)] == [0, 0, 1, 0.75, 0.5, 0.25, 0, 0]
    assert cfg.HidingConfig(grid_sizes=(16,), hide_until_epoch=0).hide_until_epoch is None
    with pytest.raises(ValueError, match="hide_until_epoch.*>= hide_from_epoch \\(3\\)"):
        cfg.HidingConfig(grid_sizes=(16,), hide_from_epoch=3, hide_until_epoch=2)
    with pytest.raises(ValueError, match="hide_anneal.*hide_until_epoch is set"):
        cfg.HidingConfig(grid_sizes=(16,), hide_anneal=True)
    with pytest.raises(ValueError, match="hide_from_epoch"):
        cfg.HidingConfig(grid_sizes=(16,), hide_from_epoch=0)


def test_eval_cache_mb_is_a_size_or_zero(tmp_path):
    assert make(tmp_path, data=dict(eval_cache_mb=0)).data.eval_cache_mb == 0
    for bad in (-1, 1.5, "big"):
        with pytest.raises(ValueError, match="eval_cache_mb.*MiB; 0: no cache"):
            make(tmp_path, data=dict(eval_cache_mb=bad))


def test_hide_share_scales_every_hiding_epoch():
    half = cfg.HidingConfig(grid_sizes=(16,), hide_share=0.5)
    assert not half.scheduled and [half.hidden_share(e) for e in (1, 7)] == [0.5, 0.5]
    # Epochs 2..5 annealed (n = 4) at share 0.5: 0.5 * (1, 3/4, 1/2, 1/4).
    anneal = cfg.HidingConfig(grid_sizes=(16,), hide_from_epoch=2, hide_until_epoch=5,
                              hide_anneal=True, hide_share=0.5)
    assert [anneal.hidden_share(e) for e in range(1, 7)] == [0, 0.5, 0.375, 0.25, 0.125, 0]
    for bad in (0, 0.0, 1.5, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="hide_share.*\(0, 1\]"):
            cfg.HidingConfig(grid_sizes=(16,), hide_share=bad)


def test_best_mode_auto(tmp_path):
    assert make(tmp_path, best_metric="val_loss").resolved_best_mode() == "min"
    assert make(tmp_path, best_metric="val_accuracy").resolved_best_mode() == "max"
    assert make(tmp_path, best_metric="val_gt_known_loc").resolved_best_mode() == "max"
    assert make(tmp_path, best_metric="val_loss", best_mode="max").resolved_best_mode() == "max"


def test_json_round_trip(tmp_path):
    c = make(tmp_path, hiding=dict(grid_sizes=(16, 32)), optim=dict(lr_values=(0.1, 0.01),
             lr_boundaries=(3,)), epochs=7, steps_per_epoch=3, model_kwargs={"width": 4})
    text = json.dumps(c.to_dict())
    back = cfg.TrainConfig.from_dict(json.loads(text))
    assert back == c
    assert isinstance(back.hiding.grid_sizes, tuple)


def test_from_dict_rejects_unknown_keys(tmp_path):
    d = make(tmp_path).to_dict()
    d["optim"]["learning_rate"] = 0.1
    with pytest.raises(ValueError, match="^optim: .*learning_rate"):
        cfg.TrainConfig.from_dict(d)
    d = make(tmp_path).to_dict()
    d["epoch"] = 3
    with pytest.raises(ValueError, match="^TrainConfig: .*epoch"):
        cfg.TrainConfig.from_dict(d)


def test_config_is_frozen(tmp_path):
    c = make(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.optim.weight_decay = 0.0


def test_empty_strings_mean_none(tmp_path):
    c = make(tmp_path, best_metric="loss", data=dict(eval_split="", data_dir=""),
             steps_per_epoch=0, mixed_precision="")
    assert c.data.eval_split is None and c.data.data_dir is None
    assert c.steps_per_epoch is None and c.mixed_precision == "none"
    assert os.path.basename(c.output_dir) == "run"


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "rmsprop"}, "optimizer: expected one of \\['sgd', 'adam'\\]"),
    ({"lr_schedule": "linear"}, "lr_schedule: expected one of"),
    ({"lr_schedule": "cosine"}, "lr_values: expected one initial rate and no lr_boundaries"),
    ({"lr_schedule": "cosine", "lr_values": (0.1,), "lr_boundaries": (3,)}, "lr_values"),
    ({"optimizer": "adam", "nesterov": True}, "nesterov: expected False"),
])
def test_optimizer_and_schedule_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfg.OptimConfig(**kwargs)


def test_cosine_adam_round_trips_through_json():
    c = cfg.TrainConfig(model="tiny_gap", output_dir="/tmp/x", optim=cfg.OptimConfig(
        optimizer="adam", lr_schedule="cosine", lr_values=(0.003,), lr_boundaries=()))
    back = cfg.TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.optim == c.optim


def test_resize_size_at_least_the_crop():
    assert cfg.DataConfig(image_size=64, resize_size=64).resize_size == 64
    assert cfg.DataConfig(image_size=64).resize_size is None
    with pytest.raises(ValueError, match=r"resize_size: expected an integer >= image_size \(64\)"):
        cfg.DataConfig(image_size=64, resize_size=63)


def test_grid_sizes_larger_than_the_image_are_rejected():
    with pytest.raises(ValueError, match=r"grid_sizes: expected patch sides at most image_size "
                                         r"\(32 px\); \[64, 100\] px would hide whole images"):
        cfg.TrainConfig(model="tiny_gap", output_dir="/tmp/x",
                        data=cfg.DataConfig(image_size=32),
                        hiding=cfg.HidingConfig(grid_sizes=(16, 64, 100)))
    cfg.TrainConfig(model="tiny_gap", output_dir="/tmp/x", data=cfg.DataConfig(image_size=32),
                    hiding=cfg.HidingConfig(grid_sizes=(0, 32)))
