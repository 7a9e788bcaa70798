"""AddReLU: a residual sum and its ReLU in one kernel, and the config rewrite that uses it."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.models.add_relu import AddReLU, fuse_add_relu_pairs


def _pair_inputs(dtype=tf.float32, shape=(2, 5, 4, 3), seed=0):
    rng = np.random.default_rng(seed)
    return [tf.cast(rng.normal(size=shape).astype("float32"), dtype) for _ in range(2)]


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_equals_relu_of_the_sum_with_its_gradients(dtype, training):
    a, b = _pair_inputs(dtype)
    upstream = _pair_inputs(dtype, seed=1)[0]
    layer = AddReLU(relu=True, dtype=dtype.name)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        ours = layer([a, b], training=training)
        ref = tf.nn.relu(a + b)
    assert ours.dtype == dtype
    np.testing.assert_array_equal(tf.cast(ours, tf.float32).numpy(), tf.cast(ref, tf.float32).numpy())
    for g_ours, g_ref in zip(tape.gradient(ours, [a, b], output_gradients=upstream),
                             tape.gradient(ref, [a, b], output_gradients=upstream)):
        np.testing.assert_array_equal(tf.cast(g_ours, tf.float32).numpy(), tf.cast(g_ref, tf.float32).numpy())


def test_without_relu_or_with_three_inputs_it_is_keras_add():
    a, b = _pair_inputs()
    c = _pair_inputs(seed=2)[0]
    np.testing.assert_array_equal(AddReLU()([a, b], training=True).numpy(), (a + b).numpy())
    np.testing.assert_allclose(AddReLU(relu=True)([a, b, c], training=True).numpy(),
                               np.maximum((a + b + c).numpy(), 0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="`relu` must be a bool, received 'yes'"):
        AddReLU(relu="yes")


def _graph():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(3, 1, name="c1")(inputs)
    fused = keras.layers.Activation("relu", name="fused_out")(keras.layers.Add(name="fused_add")([x, inputs]))
    shared = keras.layers.Add(name="shared_add")([fused, inputs])  # two readers: kept
    y = keras.layers.Activation("relu", name="shared_relu")(shared)
    z = keras.layers.Conv2D(3, 1, name="c2")(shared)
    sig = keras.layers.Activation("sigmoid", name="sig_out")(keras.layers.Add(name="sig_add")([y, z]))
    last = keras.layers.Add(name="last_add")([sig, y])  # a model output: kept
    return keras.Model(inputs, [last, keras.layers.Activation("relu", name="relu_out")(last)])


def test_rewrite_fuses_only_adds_read_by_one_relu_and_keeps_the_function():
    model = _graph()
    config = model.get_config()
    assert fuse_add_relu_pairs(config) == 1
    layers = {layer["name"]: layer for layer in config["layers"]}
    assert layers["fused_add"]["config"]["relu"] is True and layers["fused_out"]["config"]["activation"] == "linear"
    for name in ("shared_add", "sig_add", "last_add"):
        assert layers[name]["class_name"] == "Add" and "relu" not in layers[name]["config"]
    assert layers["shared_relu"]["config"]["activation"] == "relu"
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    assert isinstance(rebuilt.get_layer("fused_add"), AddReLU)
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype("float32")
    for a, b in zip(rebuilt(x, training=True), model(x, training=True)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_resnet50_fuses_its_16_block_ends_with_the_same_outputs_and_training(tmp_path):
    kwargs = dict(input_shape=(32, 32, 3), dtype_policy="mixed_bfloat16")
    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    built = []
    for fused in (False, True):
        with strategy.scope():
            model = models.get_model("resnet50_gap", 3, seed=0, fused_add_relu=fused, **kwargs)
            model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        built.append(model)
    plain, ours = built
    backbone = ours.get_layer("resnet50_backbone")
    assert sum(isinstance(layer, AddReLU) and layer.relu for layer in backbone.layers) == 16
    names = lambda m: [layer.name for layer in m.get_layer("resnet50_backbone").layers[1:]]  # noqa: E731
    assert names(ours) == names(plain)  # (the input layer's name is numbered per model)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, size=4).astype("int32")
    np.testing.assert_array_equal(ours(x, training=False).numpy(), plain(x, training=False).numpy())
    losses = [[float(m.train_on_batch(x, y)) for _ in range(2)] for m in (plain, ours)]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-2)
    path = str(tmp_path / "ours.keras")
    ours.save(path)
    reloaded = keras.saving.load_model(path).get_layer("resnet50_backbone")
    assert sum(isinstance(layer, AddReLU) and layer.relu for layer in reloaded.layers) == 16
