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
    ("export", "export_saved_model"), ("cam", "compute_cams"),
    ("data", "make_train_dataset"), ("data", "make_eval_dataset"), ("data", "get_source"),
    ("training", "train"), ("callbacks", "LocalizationCallback"),
    ("comparison", "run_comparison"),
])
def test_submodules_load_on_first_use(module, name):
    assert callable(getattr(getattr(keras_has, module), name))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        keras_has.nonexistent  # noqa: B018
