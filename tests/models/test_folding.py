"""Batch norms folded into convolutions: hand-computed weights, equal outputs, what folds."""
import numpy as np
import pytest

import keras

from keras_has import models
from keras_has.models import folding


def _randomize_statistics(model, seed=0):
    """Non-trivial gamma, beta and moving statistics in every batch norm of `model`."""
    rng = np.random.default_rng(seed)
    for layer in folding.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.3, c))


def test_a_1x1_conv_and_batch_norm_fold_to_the_hand_computed_kernel_and_bias():
    inputs = keras.Input((2, 2, 2))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")
    bn = keras.layers.BatchNormalization(epsilon=0.0, name="bn")
    model = keras.Model(inputs, bn(conv(inputs)))
    conv.kernel.assign(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))  # [1, 1, in 2, out 2]
    bn.gamma.assign([2.0, 1.0])
    bn.beta.assign([1.0, -1.0])
    bn.moving_mean.assign([0.5, 1.0])
    bn.moving_variance.assign([4.0, 0.25])  # std 2 and 0.5: scales 1 and 2
    folded = models.fold_batch_norms(model)
    assert folded.inputs[0].name == model.inputs[0].name
    kernel, bias = folded.get_layer("conv").get_weights()
    np.testing.assert_allclose(kernel[0, 0], [[1.0, 4.0], [3.0, 8.0]])
    # (0 - mean) * scale + beta: -0.5 * 1 + 1, -1 * 2 - 1.
    np.testing.assert_allclose(bias, [0.5, -3.0])
    assert isinstance(folded.get_layer("bn"), folding.FoldedBatchNorm)
    x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2)
    np.testing.assert_allclose(folded(x), model(x, training=False), rtol=1e-6)
    # The model itself is unchanged.
    assert isinstance(model.get_layer("bn"), keras.layers.BatchNormalization)
    assert not model.get_layer("conv").use_bias


def _mixed_model():
    """Convs of every foldable kind, nested, and batch norms that must not fold."""
    inner_in = keras.Input((8, 8, 4))
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False,
                                     name="dw")(inner_in)
    y = keras.layers.BatchNormalization(scale=False, name="dw_bn")(y)
    inner = keras.Model(inner_in, keras.layers.ReLU(6.0)(y), name="inner")

    inputs = keras.Input((8, 8, 3), name="images")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_bias")(inputs)   # with bias
    x = keras.layers.BatchNormalization(center=False, name="bn_bias")(x)
    x = inner(x)                                                              # nested model
    x = keras.layers.Conv2D(8, 1, groups=2, use_bias=False, name="grouped")(x)
    x = keras.layers.BatchNormalization(name="bn_grouped")(x)
    shared = keras.layers.Conv2D(8, 1, use_bias=False, name="shared")(x)      # two readers
    a = keras.layers.BatchNormalization(name="bn_shared")(shared)
    b = keras.layers.Conv2D(8, 1, activation="relu", name="activated")(shared)  # activation
    b = keras.layers.BatchNormalization(name="bn_activated")(b)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.BatchNormalization(name="bn_add")(x)                      # after an add
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(4, name="dense")(x)
    outputs = keras.layers.BatchNormalization(name="bn_dense")(x)              # after a dense
    return keras.Model(inputs, outputs)


def test_only_batch_norms_right_after_a_convolution_fold_and_outputs_stay_the_same():
    model = _mixed_model()
    _randomize_statistics(model)
    assert folding.foldable_pairs(model) == [("conv_bias", "bn_bias"), ("dw", "dw_bn"),
                                             ("grouped", "bn_grouped")]
    folded = models.fold_batch_norms(model)
    assert [layer.name for layer in folding.all_layers(folded)] == \
        [layer.name for layer in folding.all_layers(model)]
    kept = [layer.name for layer in folding.all_layers(folded)
            if isinstance(layer, keras.layers.BatchNormalization)]
    assert kept == ["bn_shared", "bn_activated", "bn_add", "bn_dense"]
    assert folding.foldable_pairs(folded) == []
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x, training=False), rtol=1e-5, atol=1e-5)


def test_nothing_to_fold_returns_the_model_and_a_subclassed_model_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert models.fold_batch_norms(model) is model

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="expected a functional Keras model, received Sub"):
        models.fold_batch_norms(Sub())


def test_mobilenetv2_folds_its_52_pairs_with_the_same_logits_and_cams(tmp_path):
    from keras_has.localize import cams as cam

    model = models.get_model("mobilenetv2_gap", 3, input_shape=(32, 32, 3), seed=0)
    _randomize_statistics(model)
    folded = models.fold_batch_norms(model)
    assert len(folding.foldable_pairs(model)) == 52
    # Its four zero paddings (before the strided depthwise convolutions) fold too.
    assert len(folding.foldable_paddings(model)) == 4 and folding.foldable_paddings(folded) == []
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    logits, features = cam.cam_rule(model).forward(x)
    logits_f, features_f = cam.cam_rule(folded).forward(x)
    np.testing.assert_allclose(logits_f, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features_f, features, rtol=1e-4, atol=1e-4)
    # The folded copy saves and loads like any model.
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(again(x), folded(x), rtol=1e-6, atol=1e-6)


def test_under_mixed_bfloat16_the_folded_model_matches_to_bfloat16_precision():
    model = models.get_model("tiny_gap", 3, input_shape=(16, 16, 3), widths=(8, 16),
                             dtype_policy="mixed_bfloat16", seed=0)
    _randomize_statistics(model)
    folded = models.fold_batch_norms(model)
    assert folded.get_layer("classifier").dtype_policy.name == \
        model.get_layer("classifier").dtype_policy.name
    x = np.random.default_rng(3).normal(size=(4, 16, 16, 3)).astype("float32")
    expected = np.asarray(model(x, training=False))
    got = np.asarray(folded(x, training=False))
    assert got.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: agreement to a few percent of the logits' range.
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max() + 1e-3


# ------------------------------------------------------------------ zero paddings
def test_same_padding_hand_computed():
    # 3x3, stride 2: an even side needs one row after, an odd side one on each side.
    assert folding._same_padding(8, 3, 2, 1) == (0, 1)
    assert folding._same_padding(7, 3, 2, 1) == (1, 1)
    assert folding._same_padding(8, 3, 1, 1) == (1, 1)
    assert folding._same_padding(8, 3, 1, 2) == (2, 2)  # effective kernel 5
    assert folding._same_padding(8, 1, 2, 1) == (0, 0)
    assert folding._same_padding(9, 4, 1, 1) == (1, 2)  # odd total: the extra one after


def _padded_model(side):
    """Zero paddings in front of convolutions: some add what `same` would, some not."""
    inputs = keras.Input((side, side, 3))
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)) if side % 2 == 0 else 1, name="pad_s2")(inputs)
    x = keras.layers.DepthwiseConv2D(3, strides=2, use_bias=False, name="dw_s2")(x)  # folds
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad_s1")(x)
    x = keras.layers.Conv2D(4, 3, name="conv_s1")(x)                                # folds
    x = keras.layers.ZeroPadding2D(2, name="pad_wide")(x)                           # 2 > same's 1
    x = keras.layers.Conv2D(4, 3, name="conv_wide")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad_same")(x)                           # conv pads too
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_same")(x)
    y = keras.layers.ZeroPadding2D(1, name="pad_shared")(x)                         # two readers
    a = keras.layers.Conv2D(4, 3, name="conv_a")(y)
    b = keras.layers.Conv2D(4, 3, name="conv_b")(y)
    return keras.Model(inputs, keras.layers.Add()([a, b]))


@pytest.mark.parametrize("side", [8, 9])
def test_zero_paddings_that_same_would_add_fold_with_the_same_outputs(side):
    model = _padded_model(side)
    _randomize_statistics(model)
    assert folding.foldable_paddings(model) == [("pad_s2", "dw_s2"), ("pad_s1", "conv_s1")]
    folded = models.fold_batch_norms(model)
    assert [layer.name for layer in folding.all_layers(folded)] == \
        [layer.name for layer in folding.all_layers(model)]
    for name in ("pad_s2", "pad_s1"):
        assert isinstance(folded.get_layer(name), folding.FoldedPadding)
    assert folded.get_layer("dw_s2").padding == folded.get_layer("conv_s1").padding == "same"
    for name in ("pad_wide", "pad_same", "pad_shared"):
        assert isinstance(folded.get_layer(name), keras.layers.ZeroPadding2D)
    assert folded.get_layer("conv_wide").padding == "valid"
    x = np.random.default_rng(4).normal(size=(2, side, side, 3)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x, training=False), rtol=1e-5, atol=1e-5)
    # Only the paddings: the batch norm stays, the outputs are the same.
    only = models.fold_batch_norms(model, paddings=False)
    assert isinstance(only.get_layer("pad_s2"), keras.layers.ZeroPadding2D)
    assert isinstance(only.get_layer("bn"), folding.FoldedBatchNorm)


def test_a_model_with_only_paddings_to_fold_is_copied_and_saves(tmp_path):
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.ZeroPadding2D(1, name="pad")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, name="conv")(x))
    assert models.fold_batch_norms(model, paddings=False) is model
    folded = models.fold_batch_norms(model)
    assert folded is not model and isinstance(folded.get_layer("pad"), folding.FoldedPadding)
    x = np.random.default_rng(5).normal(size=(1, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), rtol=1e-6, atol=1e-6)
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path, compile=False)(x), model(x),
                               rtol=1e-6, atol=1e-6)
