"""keras_has.train.checks: what a TrainConfig cannot check alone (names known to the
registries, a method that can run with the settings), before anything is written."""
import os

import pytest

from keras_has import config as cfg
from keras_has.train.checks import check_method_names, check_train_config
from tests.helpers import make_wsol_folder


def _train_config(tmp_path, method="auto", model="tiny_gap", hiding=(), source=None, **kwargs):
    root = source or make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4)
    model_kwargs = kwargs.pop("model_kwargs", {"widths": (8, 16)} if model == "tiny_gap" else {})
    return cfg.TrainConfig(
        model=model, output_dir=str(tmp_path / "run"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split="test"),
        hiding=cfg.HidingConfig(grid_sizes=hiding, hide_prob=0.5),
        wsol=cfg.MethodConfig(method=method), epochs=1, steps_per_epoch=1,
        strategy="mirrored", eval_every=1, verbose=0, model_kwargs=model_kwargs, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="resnet9000"), "model: expected one of [[]'alexnet_gap'"),
    (dict(source="imagenet_typo"), "source: expected one of .* or the path of a WSOL"),
    (dict(method="gradcam"), "method: expected 'auto' or one of [[]'acol'"),
])
def test_unknown_names_fail_naming_the_flag(tmp_path, kwargs, message):
    config = _train_config(tmp_path, **kwargs)  # the config alone accepts any name
    with pytest.raises(ValueError, match=f"^{message}"):
        check_train_config(config)
    assert not os.path.exists(tmp_path / "run")


def test_resolves_auto_and_rejects_methods_that_cannot_apply(tmp_path):
    assert check_train_config(_train_config(tmp_path, "auto")).method_config.method == "cam"
    assert _train_config(tmp_path, "auto", hiding=(8,)).method_config.method == "has"
    with pytest.raises(ValueError, match="'has' needs Hide-and-Seek settings"):
        check_train_config(_train_config(tmp_path, "has"))
    with pytest.raises(ValueError, match="'acol' trains without Hide-and-Seek hiding"):
        check_train_config(_train_config(tmp_path, "acol", hiding=(8,)))
    # ADL needs insertion points in the backbone; googlenet_gap has none defined.
    with pytest.raises(ValueError, match="'adl' has no insertion points for model "
                                         "'googlenet_gap'.*--adl_layers"):
        check_train_config(_train_config(tmp_path, "adl", model="googlenet_gap",
                                         model_kwargs={}))
    assert not os.path.exists(tmp_path / "run")


def test_train_runs_the_checks_before_writing(tmp_path):
    from keras_has.train.trainer import train

    with pytest.raises(ValueError, match="^model: expected one of"):
        train(_train_config(tmp_path, model="resnet9000"))
    assert not os.path.exists(tmp_path / "run")


def test_method_names():
    assert check_method_names(["cam", "has"]) == ("cam", "has")
    with pytest.raises(ValueError, match="^tune_method: expected names among .*'gradcam'"):
        check_method_names(["gradcam"], "tune_method")
