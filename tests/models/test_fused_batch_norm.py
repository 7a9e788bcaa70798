"""FusedBatchNormalization: Keras' BatchNormalization semantics through the fused kernel."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.models.fused_batch_norm import FusedBatchNormalization

C = 6


def _x(seed=0, shape=(4, 5, 3, C)):
    rng = np.random.default_rng(seed)
    # per-channel means and scales far from 0 / 1, so wrong statistics show
    return (rng.normal(size=shape) * np.linspace(0.5, 3.0, shape[-1]) + np.arange(shape[-1])).astype("float32")


def _pair(policy="float32", **kwargs):
    rng = np.random.default_rng(1)
    weights = [
        rng.normal(size=C).astype("float32"),  # gamma
        rng.normal(size=C).astype("float32"),  # beta
        rng.normal(size=C).astype("float32"),  # moving mean
        rng.uniform(0.5, 2.0, size=C).astype("float32"),  # moving variance
    ]
    layers = []
    for cls in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = cls(dtype=policy, **kwargs)
        layer.build((None, 5, 3, C))
        layer.set_weights(weights)
        layers.append(layer)
    return layers, weights


def test_training_step_matches_hand_computed_statistics():
    (_, fused), (gamma, beta, mean0, var0) = _pair(momentum=0.75, epsilon=1e-3)
    x = _x()
    y = fused(tf.constant(x), training=True).numpy()
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))  # biased, as Keras normalises and tracks it
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) * gamma + beta, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), 0.75 * mean0 + 0.25 * mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.75 * var0 + 0.25 * var, rtol=1e-5, atol=1e-5)


def test_inference_uses_moving_statistics_and_leaves_them():
    (_, fused), (gamma, beta, mean0, var0) = _pair(epsilon=0.01)
    x = _x(2)
    y = fused(tf.constant(x), training=False).numpy()
    np.testing.assert_allclose(y, (x - mean0) / np.sqrt(var0 + 0.01) * gamma + beta, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), mean0)
    np.testing.assert_array_equal(fused.moving_variance.numpy(), var0)


@pytest.mark.parametrize("training", [True, False])
def test_outputs_gradients_and_statistics_match_keras_float32(training):
    (keras_bn, fused), _ = _pair(momentum=0.9, epsilon=1.001e-5)
    x = tf.constant(_x(3))
    weights = tf.constant(np.random.default_rng(4).normal(size=x.shape).astype("float32"))
    results = []
    for layer in (keras_bn, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * weights + 0.1 * tf.square(y))  # random per-element weights
        grads = tape.gradient(loss, [x] + layer.trainable_variables)
        results.append((y.numpy(), [g.numpy() for g in grads], [w.numpy() for w in layer.weights]))
    (y0, g0, w0), (y1, g1, w1) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-4, atol=1e-4)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    for a, b in zip(w1, w0):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mixed_bfloat16_matches_keras_and_keeps_float32_variables():
    (keras_bn, fused), _ = _pair("mixed_bfloat16", momentum=0.5)
    x = tf.constant(_x(5))
    y0 = keras_bn(x, training=True)
    y1 = fused(x, training=True)
    assert y0.dtype == y1.dtype == tf.bfloat16
    assert {w.dtype for w in fused.weights} == {"float32"}
    # both round the same float32 result to bfloat16 (8 significant bits): within 1-2 ulps
    np.testing.assert_allclose(
        tf.cast(y1, tf.float32).numpy(), tf.cast(y0, tf.float32).numpy(), rtol=2 ** -7, atol=2 ** -7
    )
    for a, b in zip(fused.get_weights(), keras_bn.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-2)  # statistics of bfloat16 inputs
    assert not np.allclose(fused.moving_mean.numpy(), _pair()[1][2])  # they were updated


def test_frozen_layer_uses_moving_statistics_in_training():
    (keras_bn, fused), (_, _, mean0, _) = _pair()
    keras_bn.trainable = fused.trainable = False
    x = tf.constant(_x(6))
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean.numpy(), mean0)


@pytest.mark.parametrize("kwargs, shape", [({"axis": 1}, (4, C, 5, 3)), ({}, (4, 3, C)), ({"center": False}, None)])
def test_other_layouts_and_options_match_keras(kwargs, shape):
    shape = shape or (4, 5, 3, C)
    x = tf.constant(_x(7, shape))
    keras_bn = keras.layers.BatchNormalization(**kwargs)
    fused = FusedBatchNormalization(**kwargs)
    keras_bn.build(x.shape)
    fused.build(x.shape)
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), rtol=1e-4, atol=1e-4)
    for a, b in zip(fused.get_weights(), keras_bn.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_same_variables_as_keras():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-4, center=False, name="bn")
    assert layer.get_config() == {**keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-4, center=False,
                                                                      name="bn").get_config()}
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is FusedBatchNormalization
    layer.build((None, 4, 4, 3))
    assert [w.path for w in layer.weights] == ["bn/gamma", "bn/moving_mean", "bn/moving_variance"]


# ---------------------------------------------------------------- in the backbones


def _types(model, kind="mobilenetv2"):
    return {type(layer) for layer in model.get_layer(f"{kind}_backbone").layers}


def test_backbones_use_the_fused_layer_by_default_and_keras_on_request():
    fused = models.get_model("mobilenetv2_gap", 3, input_shape=(32, 32, 3))
    plain = models.get_model("mobilenetv2_gap", 3, input_shape=(32, 32, 3), fused_batch_norm=False)
    assert FusedBatchNormalization in _types(fused)
    assert keras.layers.BatchNormalization in _types(plain) and FusedBatchNormalization not in _types(plain)
    assert fused.count_params() == plain.count_params()


def test_weights_files_load_across_the_two_layers(tmp_path):
    fused = models.get_model("resnet50_gap", 3, input_shape=(32, 32, 3), seed=0)
    plain = models.get_model("resnet50_gap", 3, input_shape=(32, 32, 3), seed=1, fused_batch_norm=False)
    x = _x(8, (2, 32, 32, 3))
    path = str(tmp_path / "fused.weights.h5")
    fused.save_weights(path)
    plain.load_weights(path)
    np.testing.assert_allclose(plain(x, training=False), fused(x, training=False), rtol=1e-3, atol=1e-3)
    # and the other way: files saved from keras.layers.BatchNormalization models load
    other = models.get_model("resnet50_gap", 3, input_shape=(32, 32, 3), seed=2, fused_batch_norm=False)
    other_path = str(tmp_path / "plain.weights.h5")
    other.save_weights(other_path)
    fused.load_weights(other_path)
    for a, b in zip(fused.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    model_path = str(tmp_path / "fused.keras")
    fused.save(model_path)
    reloaded = keras.saving.load_model(model_path)
    assert FusedBatchNormalization in _types(reloaded, "resnet50")
    np.testing.assert_allclose(reloaded(x, training=False), fused(x, training=False), rtol=1e-5, atol=1e-5)


def _small_bn_net(bn_class, policy):
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for i, filters in enumerate((8, 16, 16)):
        x = keras.layers.Conv2D(filters, 3, strides=1 + (i > 0), use_bias=False, dtype=policy,
                                kernel_initializer=keras.initializers.GlorotUniform(seed=i))(x)
        x = bn_class(momentum=0.9, dtype=policy)(x)
        x = keras.layers.ReLU(dtype=policy)(x)
    x = keras.layers.GlobalAveragePooling2D(dtype=policy)(x)
    outputs = keras.layers.Dense(3, dtype="float32", kernel_initializer=keras.initializers.GlorotUniform(seed=9))(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-4), ("mixed_bfloat16", 2e-2)])
def test_a_fixed_seed_training_run_gives_the_same_losses(policy, tolerance):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(16, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, size=16).astype("int32")
    curves, stats = [], []
    for bn_class in (keras.layers.BatchNormalization, FusedBatchNormalization):
        model = _small_bn_net(bn_class, policy)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        curves.append([float(model.train_on_batch(x, y)) for _ in range(8)])
        stats.append([w.numpy() for w in model.non_trainable_weights])
    assert curves[0][-1] < 0.7 * curves[0][0]  # it learns
    np.testing.assert_allclose(curves[1], curves[0], rtol=tolerance)
    for a, b in zip(stats[1], stats[0]):
        np.testing.assert_allclose(a, b, rtol=10 * tolerance, atol=10 * tolerance)


@pytest.mark.parametrize("policy, steps, tolerance", [("float32", 2, 1e-2), ("mixed_bfloat16", 1, 3e-2)])
def test_mobilenetv2_first_steps_match_keras_batch_norm(policy, steps, tolerance):
    # Only the first steps: later ones diverge for *any* two float32 implementations
    # (Keras' own float32 and float64 disagree by ~1e-2 in these gradients), since ~50
    # training-mode batch norms over 8 images of 64 px are ill-conditioned; in bfloat16
    # already the second step differs by ~20% between any two rounding orders.
    rng = np.random.default_rng(9)
    x = rng.normal(size=(8, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 3, size=8).astype("int32")
    curves = []
    for fused in (False, True):
        model = models.get_model(
            "mobilenetv2_gap", 3, input_shape=(64, 64, 3), seed=0, dtype_policy=policy, fused_batch_norm=fused
        )
        model.compile(optimizer=keras.optimizers.SGD(0.002),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        curves.append([float(model.train_on_batch(x, y)) for _ in range(steps)])
    np.testing.assert_allclose(curves[1], curves[0], rtol=tolerance)


def test_trains_under_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    x = _x(10)
    with strategy.scope():
        layer = FusedBatchNormalization(momentum=0.5)
        layer.build(x.shape)

    @tf.function
    def step(batch):
        return strategy.run(lambda b: layer(b, training=True), args=(batch,))

    step(tf.constant(x))
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
