"""Tests for keras_has.models: reference architectures, registry, serialisation, training."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.models.caffe_layers import (
    CaffeMaxPooling2D,
    GroupedConv2D,
    LocalResponseNormalization,
    native_grouped_conv_supported,
)

ALL_MODELS = [
    "alexnet_gap",
    "googlenet_gap",
    "inceptionv3_gap",
    "mobilenetv2_gap",
    "resnet50_gap",
    "tiny_gap",
    "vgg16_gap",
]


def _conv_params(k, c_in, c_out, groups=1):
    return k * k * (c_in // groups) * c_out + c_out


# ---------------------------------------------------------------- reference definitions


@pytest.mark.parametrize(
    "name, expected_params, expected_cam",
    [
        ("alexnet_gap", 5_133_800, (11, 11, 512)),
        ("googlenet_gap", 8_345_896, (14, 14, 1024)),
        ("vgg16_gap", 18_100_008, (14, 14, 1024)),
    ],
)
def test_reference_parameter_counts_and_cam_sizes(name, expected_params, expected_cam):
    model = models.get_model(name, num_classes=1000)  # reference input size, build only
    assert model.count_params() == expected_params
    assert tuple(model.get_layer("cam_features").output.shape[1:]) == expected_cam
    assert tuple(model.output.shape) == (None, 1000)


def test_alexnet_groups_one_adds_the_grouped_kernels_back():
    # groups=1 doubles the kernel input depth of conv2, conv4, conv5, conv6, conv7.
    extra = sum(
        _conv_params(k, c_in, c_out) - _conv_params(k, c_in, c_out, groups=2)
        for k, c_in, c_out in [(5, 96, 256), (3, 384, 384), (3, 384, 384), (3, 384, 512), (3, 512, 512)]
    )
    model = models.get_model("alexnet_gap", 1000, groups=1)
    assert model.count_params() == 5_133_800 + extra


def test_alexnet_batch_norm_replaces_lrn():
    model = models.get_model("alexnet_gap", 10, input_shape=(99, 99, 3), batch_norm=True)
    names = [layer.name for layer in model.layers]
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in model.layers)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 7
    assert "conv1_bn" in names and "conv7_bn" in names
    plain = models.get_model("alexnet_gap", 10, input_shape=(99, 99, 3))
    assert [layer.name for layer in plain.layers if isinstance(layer, LocalResponseNormalization)] == [
        "norm1",
        "norm2",
    ]


def _caffe_size(n, k, s, pad=0):
    return int(np.ceil((n + 2 * pad - k) / s)) + 1


# CAM side at CONTRACT_SIZE px, computed by hand from each architecture's strides.
CONTRACT_SIZE = 96
EXPECTED_CAM_HW = {
    "tiny_gap": 12,  # default widths: 3 pools, 96 / 8
    # 96 -> conv1 (96-11)//4+1=22 -> pool1 11 -> pool2 5 -> pool5 (stride 1) 3
    "alexnet_gap": _caffe_size(_caffe_size(_caffe_size((96 - 11) // 4 + 1, 3, 2), 3, 2), 3, 1),
    # 96 -> conv1 pad 3 /2 = 48 -> pool1 24 -> pool2 12 -> pool3 6
    "googlenet_gap": _caffe_size(_caffe_size(_caffe_size((96 + 6 - 7) // 2 + 1, 3, 2), 3, 2), 3, 2),
    "vgg16_gap": 6,  # 1/16 (pool5 removed)
    "resnet50_gap": 6,  # 1/16 (last stage stride 1)
    "mobilenetv2_gap": 6,  # 1/16
    # valid 3x3/2 conv 47, 3x3 conv 45, 3x3/2 pool 22, 3x3 conv 20, 3x3/2 pool 9; the
    # stride-2 reduction after it is removed (wsolevaluation's modification)
    "inceptionv3_gap": ((((96 - 3) // 2 + 1 - 2 - 3) // 2 + 1 - 2) - 3) // 2 + 1,
}


@pytest.mark.parametrize("name", models.list_models())
def test_model_contract(name):
    """What training, CAMs, evaluation and export rely on, for every registered model:
    float32 logits [B, K], a `cam_features` layer and a Dense `classifier` whose kernel
    matches its channels, CAMs of the feature map's size, a config round trip that
    rebuilds the same function, and float32 logits in mixed precision."""
    from keras_has.localize.cams import compute_cams

    size = CONTRACT_SIZE
    model = models.get_model(name, num_classes=3, input_shape=(size, size, 3))
    features = keras.Model(model.input, [model.output, model.get_layer("cam_features").output])
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    logits, cam_features = features(x, training=False)
    assert logits.shape == (2, 3) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    hw = tuple(cam_features.shape[1:3])
    if name in EXPECTED_CAM_HW:
        assert hw == (EXPECTED_CAM_HW[name],) * 2
    classifier = model.get_layer("classifier")
    assert isinstance(classifier, keras.layers.Dense)
    assert classifier.kernel.shape == (cam_features.shape[-1], 3)
    cams = compute_cams(model, x, [0, 2])
    assert tuple(cams.shape) == (2,) + hw and cams.dtype == tf.float32
    # CAM of class k = feature map . kernel[:, k] (bias excluded).
    expected = np.einsum("bhwc,cb->bhw", cam_features.numpy(),
                         classifier.kernel.numpy()[:, [0, 2]])
    np.testing.assert_allclose(cams.numpy(), expected, rtol=1e-4, atol=1e-4)

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False), logits, rtol=1e-4, atol=1e-4)

    mixed = models.get_model(name, num_classes=3, input_shape=(size, size, 3),
                             dtype_policy="mixed_bfloat16")
    assert mixed(x, training=False).dtype == tf.float32


def test_every_model_has_a_contract_cam_size():
    """A newly registered model gets a hand-computed CAM size above."""
    assert sorted(EXPECTED_CAM_HW) == models.list_models()


def test_reference_sizes_of_the_stride_modified_backbones():
    # wsolevaluation: 1/16 resolution instead of the stock 1/32 (7x7 at 224 px).
    assert models.get_model("resnet50_gap", 5).get_layer("cam_features").output.shape[1:3] == (14, 14)
    assert models.get_model("mobilenetv2_gap", 5).get_layer("cam_features").output.shape[1:3] == (14, 14)


def test_variable_input_size():
    model = models.get_model("alexnet_gap", 4, input_shape=(None, None, 3))
    fm = keras.Model(model.input, model.get_layer("cam_features").output)
    for size in (99, 131):
        expected = _caffe_size(_caffe_size(_caffe_size((size - 11) // 4 + 1, 3, 2), 3, 2), 3, 1)
        assert fm(np.zeros((1, size, size, 3), "float32")).shape[1:3] == (expected, expected)


# ---------------------------------------------------------------- Caffe layers


def test_caffe_max_pool_rounds_up_and_never_picks_padding():
    x = -np.arange(16, dtype="float32").reshape(1, 4, 4, 1)  # all <= 0: zero padding would win
    out = CaffeMaxPooling2D(3, 2)(x).numpy()[0, :, :, 0]
    # windows: rows {0..2, 2..3} x cols {0..2, 2..3}; the max of -v is -min(v).
    np.testing.assert_array_equal(out, [[0.0, -2.0], [-8.0, -10.0]])
    assert CaffeMaxPooling2D(3, 2).compute_output_shape((None, 55, 112, 8)) == (None, 27, 56, 8)


@pytest.mark.parametrize("height, width", [(7, 7), (8, 7), (8, 8)])
def test_caffe_max_pool_equals_the_window_maxima_for_static_and_dynamic_sizes(height, width):
    # 7 -> 3 needs no padding (floor and ceil agree), 8 -> 4 pads one row / column.
    x = np.random.default_rng(3).normal(size=(2, height, width, 3)).astype("float32") - 5.0
    pool = CaffeMaxPooling2D(3, 2)
    out_h, out_w = -(-(height - 3) // 2) + 1, -(-(width - 3) // 2) + 1
    expected = np.array([[x[:, 2 * r:2 * r + 3, 2 * c:2 * c + 3].max(axis=(1, 2)) for c in range(out_w)]
                         for r in range(out_h)]).transpose(2, 0, 1, 3)
    np.testing.assert_array_equal(pool(x).numpy(), expected)
    dynamic = tf.function(pool, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    np.testing.assert_array_equal(dynamic(x).numpy(), expected)


def test_caffe_max_pool_with_pad():
    x = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    out = CaffeMaxPooling2D(3, 2, pad=1)(x).numpy()[0, :, :, 0]
    # padded 7x7, out = ceil((5 + 2 - 3) / 2) + 1 = 3; window r covers input rows 2r-1..2r+1.
    rows = [slice(max(0, 2 * r - 1), 2 * r + 2) for r in range(3)]
    expected = [[x[0, rs, cs, 0].max() for cs in rows] for rs in rows]
    np.testing.assert_array_equal(out, expected)


def test_grouped_conv_matches_keras_grouped_conv_and_per_group_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 5, 4)).astype("float32")
    ours = GroupedConv2D(6, 3, padding="same", groups=2)
    ref = keras.layers.Conv2D(6, 3, padding="same", groups=2)
    ours.build(x.shape)
    ref.build(x.shape)
    assert ours.kernel.shape == ref.kernel.shape == (3, 3, 2, 6)
    ref.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    # group 1 (filters 3..5) sees only input channels 2..3: its output at the centre pixel
    kernel, bias = ours.get_weights()
    centre = np.einsum("ijc,ijcf->f", x[0, 1:4, 1:4, 2:4], kernel[:, :, :, 3:6]) + bias[3:6]
    np.testing.assert_allclose(ours(x).numpy()[0, 2, 2, 3:6], centre, rtol=1e-5, atol=1e-5)
    assert GroupedConv2D.from_config(ours.get_config()).groups == 2


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("bfloat16", 2e-2)])
def test_grouped_conv_native_kernel_equals_one_conv_per_group(dtype, tol):
    # The grouped kernel through tf.nn.conv2d (oneDNN) against split-conv-concat: outputs
    # and the gradients of the input, kernel and bias.
    if not native_grouped_conv_supported():
        pytest.skip("this TensorFlow build has no grouped-convolution kernel (oneDNN off)")
    rng = np.random.default_rng(8)
    x = tf.cast(rng.normal(size=(2, 9, 9, 6)).astype("float32"), dtype)
    layer = GroupedConv2D(4, 3, strides=2, padding="same", groups=2, dtype=dtype)
    layer.build(x.shape)
    upstream = tf.cast(rng.normal(size=(2, 5, 5, 4)).astype("float32"), dtype)

    def run(convolve):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.bias_add(convolve(x, tf.cast(layer.kernel, dtype)), tf.cast(layer.bias, dtype))
        grads = tape.gradient(y, [x] + layer.trainable_variables, output_gradients=upstream)
        return [tf.cast(t, tf.float32).numpy() for t in [y] + grads]

    native, split = run(layer.convolution_op), run(layer._split_convolution)
    for a, b in zip(native, split):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_lrn_matches_caffe_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 3, 7)).astype("float32") * 10
    size, alpha, beta, k = 5, 1e-2, 0.75, 2.0
    out = LocalResponseNormalization(size, alpha, beta, k)(x).numpy()
    expected = np.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - size // 2), min(7, c + size // 2 + 1)
        scale = k + alpha / size * np.sum(x[..., lo:hi] ** 2, axis=-1)
        expected[..., c] = x[..., c] / scale**beta
    np.testing.assert_allclose(out, expected, rtol=1e-5)


# ---------------------------------------------------------------- registry and errors


def test_registry_lists_all_models():
    assert models.list_models() == ALL_MODELS


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model name 'alexnet'.*alexnet_gap.*tiny_gap"):
        models.get_model("alexnet", 10)


def test_unknown_option_is_rejected_before_building():
    with pytest.raises(ValueError, match=r"does not accept option\(s\) \['batchnorm'\].*batch_norm"):
        models.get_model("alexnet_gap", 10, batchnorm=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "input_shape": (64, 64)}, "input_shape"),
        ({"num_classes": 3, "input_shape": (64, 64, 1)}, "input_shape"),
        ({"num_classes": 3, "dtype_policy": "float8"}, "dtype_policy"),
        ({"num_classes": 3, "widths": ()}, "widths"),
        ({"num_classes": 3, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get_model("tiny_gap", **kwargs)


def test_bad_groups_and_weights():
    with pytest.raises(ValueError, match="groups"):
        models.get_model("alexnet_gap", 10, groups=3)
    with pytest.raises(FileNotFoundError, match="no file at"):
        models.get_model("mobilenetv2_gap", 10, input_shape=(32, 32, 3), weights="/nonexistent/w.weights.h5")
    with pytest.raises(FileNotFoundError, match="None, 'imagenet' or the path"):
        models.get_model("mobilenetv2_gap", 10, input_shape=(32, 32, 3), weights="places365")
    with pytest.raises(ValueError, match="weights"):
        models.get_model("mobilenetv2_gap", 10, input_shape=(32, 32, 3), weights=365)


# ---------------------------------------------------------------- seeding


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("tiny_gap", {"input_shape": (32, 32, 3)}),
        ("googlenet_gap", {"input_shape": (32, 32, 3)}),
        ("mobilenetv2_gap", {"input_shape": (32, 32, 3), "cam_convs": (8,)}),
    ],
)
def test_seed_fixes_every_initial_weight(name, kwargs):
    first = models.get_model(name, 3, seed=7, **kwargs).get_weights()
    again = models.get_model(name, 3, seed=7, **kwargs).get_weights()
    other = models.get_model(name, 3, seed=8, **kwargs).get_weights()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    random_arrays = [i for i, a in enumerate(first) if np.unique(a).size > 1]
    assert len(random_arrays) > 3
    assert all(not np.array_equal(first[i], other[i]) for i in random_arrays)


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("name, size", [("tiny_gap", 32), ("alexnet_gap", 67), ("googlenet_gap", 32)])
def test_dtype_policy_kwarg_gives_bfloat16_compute_and_float32_logits(name, size):
    model = models.get_model(name, 3, input_shape=(size, size, 3), dtype_policy="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # global state untouched
    assert model.get_layer("cam_features").output.dtype == "bfloat16"
    assert model.get_layer("classifier").dtype_policy.name == "float32"
    assert all(v.dtype == "float32" for v in model.weights)
    out = model(np.ones((2, size, size, 3), "float32"))
    assert out.dtype == tf.float32


def test_global_mixed_policy_is_respected_and_restored():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.get_model("tiny_gap", 3, input_shape=(32, 32, 3))
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("cam_features").output.dtype == "bfloat16"
    assert model(np.ones((1, 32, 32, 3), "float32")).dtype == tf.float32


def test_backbone_dtype_policy_reaches_inner_layers():
    model = models.get_model("mobilenetv2_gap", 3, input_shape=(32, 32, 3), dtype_policy="mixed_bfloat16")
    backbone = model.get_layer("mobilenetv2_backbone")
    policies = {layer.dtype_policy.name for layer in backbone.layers if layer.weights}
    assert policies == {"mixed_bfloat16"}


# ---------------------------------------------------------------- serialisation


def _tiny_alexnet():
    return models.get_model("alexnet_gap", 4, input_shape=(67, 67, 3))


@pytest.mark.parametrize("build", [lambda: models.get_model("tiny_gap", 4, input_shape=(32, 32, 3)), _tiny_alexnet])
def test_config_round_trip(build):
    model = build()
    clone = keras.Model.from_config(model.get_config())
    assert [(l.name, type(l)) for l in clone.layers] == [(l.name, type(l)) for l in model.layers]
    assert clone.count_params() == model.count_params()
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(2).normal(size=(2,) + tuple(model.input.shape[1:])).astype("float32")
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-5)


def test_custom_layer_configs_round_trip():
    pool = CaffeMaxPooling2D(3, 2, pad=1, name="p")
    assert CaffeMaxPooling2D.from_config(pool.get_config()).get_config() == pool.get_config()
    lrn = LocalResponseNormalization(3, 2e-4, 0.5, 1.5, name="n")
    assert LocalResponseNormalization.from_config(lrn.get_config()).get_config() == lrn.get_config()


@pytest.mark.parametrize("build", [lambda: models.get_model("tiny_gap", 4, input_shape=(32, 32, 3)), _tiny_alexnet])
def test_save_and_reload_keras_file(tmp_path, build):
    model = build()
    x = np.random.default_rng(3).normal(size=(2,) + tuple(model.input.shape[1:])).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.get_layer("cam_features") is not None
    np.testing.assert_allclose(reloaded(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- training


def _toy_batch():
    # Two classes told apart by where a bright square sits; 8 images of 32x32.
    rng = np.random.default_rng(4)
    x = rng.normal(scale=0.3, size=(8, 32, 32, 3)).astype("float32")
    y = np.array([0, 1] * 4, dtype="int32")
    for i, label in enumerate(y):
        r, c = (4, 4) if label == 0 else (20, 20)
        x[i, r : r + 8, c : c + 8, :] += 2.0
    return x, y


@pytest.mark.parametrize("dtype_policy", ["float32", "mixed_bfloat16"])
def test_a_few_training_steps_drive_the_loss_down(dtype_policy):
    model = models.get_model(
        "tiny_gap", 2, input_shape=(32, 32, 3), widths=(16, 32), dtype_policy=dtype_policy, seed=0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = _toy_batch()
    losses = [float(model.train_on_batch(x, y)) for _ in range(15)]
    assert np.all(np.isfinite(losses))
    assert losses[0] > 0.5  # starts near ln 2
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


# ---------------------------------------------------------------- backbone weights (offline)


def _mobilenet_base(size):
    return keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3))


def _assert_backbone_weights_equal(model, base):
    backbone = model.get_layer("mobilenetv2_backbone")
    checked = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        for got, want in zip(layer.get_weights(), base.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, want)
            checked += 1
    assert checked == len(backbone.weights) > 100


def test_backbone_weights_from_a_weights_file(tmp_path):
    base = _mobilenet_base(32)
    path = str(tmp_path / "mobilenet_notop.weights.h5")
    base.save_weights(path)
    model = models.get_model("mobilenetv2_gap", 3, input_shape=(32, 32, 3), weights=path)
    _assert_backbone_weights_equal(model, base)


def test_imagenet_weights_come_from_the_keras_cache_offline(tmp_path, monkeypatch):
    from keras.src.backend import config as keras_config
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    import h5py

    def no_download(*args, **kwargs):
        raise AssertionError(f"tests must never download: {args[:1]}")

    # Keras reads KERAS_HOME once at import; point its cache at a temp dir for this test.
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", no_download)
    base = _mobilenet_base(96)
    os.makedirs(tmp_path / "models")
    cached = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    with h5py.File(cached, "w") as f:  # the legacy weights layout keras.applications downloads
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    model = models.get_model("mobilenetv2_gap", 3, input_shape=(96, 96, 3), weights="imagenet")
    _assert_backbone_weights_equal(model, base)
    # the head is new: the CAM classifier has 1280 x 3 weights, no ImageNet head anywhere
    assert model.get_layer("classifier").kernel.shape == (1280, 3)


@pytest.mark.parametrize("pools, expected_hw", [(0, 32), (1, 16), (2, 8), (3, 4)])
def test_tiny_gap_cam_resolution_follows_pools(pools, expected_hw):
    model = models.get_model("tiny_gap", 3, input_shape=(32, 32, 3), widths=(4, 4, 4, 4), pools=pools)
    assert tuple(model.get_layer("cam_features").output.shape[1:3]) == (expected_hw, expected_hw)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == pools


@pytest.mark.parametrize("pools", [-1, 4, 1.5, True])
def test_tiny_gap_rejects_pools_outside_the_blocks(pools):
    with pytest.raises(ValueError, match="pools.*received"):
        models.get_model("tiny_gap", 3, input_shape=(32, 32, 3), widths=(4, 4, 4, 4), pools=pools)
