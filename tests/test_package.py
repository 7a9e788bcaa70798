"""The public names that docs/architecture.md and DESIGN.md promise."""
import pytest

import keras_has


def test_top_level_names():
    assert callable(keras_has.hide_patches)
    import keras

    assert issubclass(keras_has.HideAndSeek, keras.layers.Layer)


@pytest.mark.parametrize("module, name", [
    ("models", "get_model"), ("models", "list_models"),
    ("localization", "boxes_from_cams"), ("metrics", "LocalizationEvaluator"),
    ("export", "export_saved_model"), ("hiding", "hide_patches"),
    ("data", "make_train_dataset"), ("data", "make_eval_dataset"), ("data", "get_source"),
    ("methods", "get_method"), ("temporal", "hide_segments"),
])
def test_submodules_load_on_first_use(module, name):
    assert callable(getattr(getattr(keras_has, module), name))


@pytest.mark.parametrize("module, name", [
    ("localize.cams", "compute_cams"), ("localize.boxes", "boxes_from_cams"),
    ("train.trainer", "train"), ("train.callbacks", "LocalizationCallback"),
    ("experiments.comparison", "run_comparison"), ("serve.export", "export_saved_model"),
])
def test_layered_modules_hold_the_api(module, name):
    import importlib

    assert callable(getattr(importlib.import_module(f"keras_has.{module}"), name))


def test_former_paths_are_the_same_objects():
    from keras_has.localize import boxes, metrics
    from keras_has.serve import export

    assert keras_has.localization.boxes_from_cams is boxes.boxes_from_cams
    assert keras_has.metrics.LocalizationEvaluator is metrics.LocalizationEvaluator
    assert keras_has.export.export_saved_model is export.export_saved_model
    assert keras_has.compute_cams is keras_has.localize.cams.compute_cams


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        keras_has.nonexistent  # noqa: B018
