"""PointwiseMatmulConv2D: 1x1 convolutions with matrix-product gradients, Keras' function."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.models.pointwise_conv import PointwiseMatmulConv2D, pointwise_conv2d


def _tensors(shape, filters, seed=0, dtype=tf.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(1, 1, shape[-1], filters)).astype("float32")
    bias = rng.normal(size=filters).astype("float32")
    return tuple(tf.cast(t, dtype) for t in (x, kernel, bias))


def _autodiff(x, kernel, bias, stride, upstream):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=stride, padding="SAME"), bias)
    return [y] + tape.gradient(y, [x, kernel, bias], output_gradients=upstream)


@pytest.mark.parametrize("stride, size", [(1, 5), (2, 7), (2, 6), (3, 7)])
def test_outputs_and_gradients_equal_the_convolution_in_float32(stride, size):
    x, kernel, bias = _tensors((2, size, size, 3), 4)
    out = -(-size // stride)
    upstream = tf.constant(np.random.default_rng(1).normal(size=(2, out, out, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch([x, kernel, bias])
        y = pointwise_conv2d(x, kernel, bias, stride)
    ours = [y] + tape.gradient(y, [x, kernel, bias], output_gradients=upstream)
    for a, b in zip(ours, _autodiff(x, kernel, bias, stride, upstream)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    # the strided input gradient is zero off the sampled pixels
    dx = ours[1].numpy()
    if stride > 1:
        off = np.ones(size, bool)
        off[::stride] = False
        assert np.all(dx[:, off] == 0) and np.all(dx[:, :, off] == 0)


def test_without_bias_gives_two_gradients_equal_to_the_convolution():
    x, kernel, _ = _tensors((1, 4, 4, 5), 2, seed=3)
    upstream = tf.constant(np.random.default_rng(4).normal(size=(1, 4, 4, 2)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = pointwise_conv2d(x, kernel)
        ref = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    for a, b in zip(tape.gradient(ours, [x, kernel], output_gradients=upstream),
                    tape.gradient(ref, [x, kernel], output_gradients=upstream)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_bfloat16_bias_gradient_accumulates_in_float32():
    # 3000 rows of upstream ones: the exact bias gradient is 3000, whose bfloat16 neighbours
    # are 2992 and 3008; a sum kept in bfloat16 stalls far below (256 + 1 == 256).
    x, kernel, bias = _tensors((3, 10, 100, 2), 2, dtype=tf.bfloat16)
    upstream = tf.ones((3, 10, 100, 2), tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(bias)
        y = pointwise_conv2d(x, kernel, bias)
    dbias = tf.cast(tape.gradient(y, bias, output_gradients=upstream), tf.float32).numpy()
    np.testing.assert_array_less(np.abs(dbias - 3000.0), 8.01)


def test_rejects_kernels_that_are_not_1x1_and_bad_strides():
    x = tf.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match=r"kernel must be \[1, 1, C, F\], received shape \(3, 3, 2, 4\)"):
        pointwise_conv2d(x, tf.zeros((3, 3, 2, 4)))
    with pytest.raises(ValueError, match="stride must be an int >= 1, received 0"):
        pointwise_conv2d(x, tf.zeros((1, 1, 2, 4)), stride=0)


def _pair(policy, kernel_size=1, strides=1, use_bias=True):
    layers = []
    for cls in (keras.layers.Conv2D, PointwiseMatmulConv2D):
        layer = cls(6, kernel_size, strides=strides, padding="same", use_bias=use_bias,
                    dtype=policy, bias_initializer="glorot_uniform")
        layer.build((None, 9, 9, 4))
        layers.append(layer)
    layers[1].set_weights(layers[0].get_weights())
    return layers


@pytest.mark.parametrize("strides, use_bias", [(1, True), (2, False)])
def test_layer_in_mixed_bfloat16_matches_keras_conv2d_and_float32_gradients(strides, use_bias):
    keras_layer, ours = _pair("mixed_bfloat16", strides=strides, use_bias=use_bias)
    x = tf.constant(np.random.default_rng(5).normal(size=(4, 9, 9, 4)).astype("float32"))
    assert ours._matmul_gradient_applies(x)
    weights = tf.linspace(-1.0, 1.0, 6)
    results = []
    for layer in (keras_layer, ours):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        results.append([y] + tape.gradient(loss, [x] + layer.trainable_variables))
    # the forward is the same convolution
    np.testing.assert_array_equal(results[1][0].numpy(), results[0][0].numpy())
    assert results[1][0].dtype == tf.bfloat16
    # gradients: float32 arithmetic on the bfloat16-rounded operands is the reference
    rounded = [tf.cast(tf.cast(t, tf.bfloat16), tf.float32) for t in [x] + ours.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch(rounded)
        y = tf.nn.conv2d(rounded[0], rounded[1], strides=strides, padding="SAME")
        if use_bias:
            y = tf.nn.bias_add(y, rounded[2])
        loss = tf.reduce_sum(y * weights)
    reference = tape.gradient(loss, rounded)
    for mine, keras_grad, ref in zip(results[1][1:], results[0][1:], reference):
        assert mine.dtype == keras_grad.dtype
        ref = ref.numpy()
        np.testing.assert_allclose(tf.cast(mine, tf.float32).numpy(), ref, rtol=0, atol=1e-2 * np.abs(ref).max())


def test_layer_takes_keras_path_outside_its_case():
    x = tf.zeros((1, 9, 9, 4))
    assert not _pair("float32")[1]._matmul_gradient_applies(x)
    assert not _pair("mixed_bfloat16", kernel_size=3)[1]._matmul_gradient_applies(x)
    # inference (training falsy) runs Keras' call: same outputs for any input
    keras_layer, ours = _pair("mixed_bfloat16")
    x = tf.constant(np.random.default_rng(6).normal(size=(2, 9, 9, 4)).astype("float32"))
    np.testing.assert_array_equal(ours(x).numpy(), keras_layer(x).numpy())


def test_backbones_use_the_layer_by_default_keras_on_request_and_weights_load_across(tmp_path):
    ours = models.get_model("resnet50_gap", 3, input_shape=(32, 32, 3), seed=0)
    plain = models.get_model("resnet50_gap", 3, input_shape=(32, 32, 3), seed=1, pointwise_matmul=False)
    types = lambda m: {type(l) for l in m.get_layer("resnet50_backbone").layers}  # noqa: E731
    assert PointwiseMatmulConv2D in types(ours)
    assert keras.layers.Conv2D in types(plain) and PointwiseMatmulConv2D not in types(plain)
    path = str(tmp_path / "ours.weights.h5")
    ours.save_weights(path)
    plain.load_weights(path)
    x = np.random.default_rng(7).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(plain(x, training=False), ours(x, training=False), rtol=1e-5, atol=1e-5)
    model_path = str(tmp_path / "ours.keras")
    ours.save(model_path)
    reloaded = keras.saving.load_model(model_path)
    assert PointwiseMatmulConv2D in types(reloaded)


def _small_pointwise_net(conv_class, policy):
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", dtype=policy,
                            kernel_initializer=keras.initializers.GlorotUniform(seed=0))(inputs)
    for i, (filters, strides) in enumerate(((16, 1), (16, 2), (8, 1))):
        x = conv_class(filters, 1, strides=strides, dtype=policy,
                       kernel_initializer=keras.initializers.GlorotUniform(seed=i + 1))(x)
        x = keras.layers.BatchNormalization(momentum=0.9, dtype=policy)(x)
        x = keras.layers.ReLU(dtype=policy)(x)
    x = keras.layers.GlobalAveragePooling2D(dtype=policy)(x)
    outputs = keras.layers.Dense(3, dtype="float32", kernel_initializer=keras.initializers.GlorotUniform(seed=9))(x)
    return keras.Model(inputs, outputs)


def test_a_fixed_seed_training_run_gives_the_same_losses_under_mirrored_strategy():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(16, 12, 12, 3)).astype("float32")
    y = rng.integers(0, 3, size=16).astype("int32")
    curves = []
    for conv_class in (keras.layers.Conv2D, PointwiseMatmulConv2D):
        with tf.distribute.MirroredStrategy(devices=["/cpu:0"]).scope():
            model = _small_pointwise_net(conv_class, "mixed_bfloat16")
            model.compile(optimizer=keras.optimizers.SGD(0.2, momentum=0.9),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, batch_size=16, epochs=12, shuffle=False, verbose=0)
        curves.append(history.history["loss"])
    assert curves[0][-1] < 0.7 * curves[0][0]  # it learns
    np.testing.assert_allclose(curves[1], curves[0], rtol=3e-2)
