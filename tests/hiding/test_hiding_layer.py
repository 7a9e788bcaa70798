"""Tests of keras_has.hiding.layer.HideAndSeek."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import HideAndSeek
from keras_has.hiding import hide_patches


def _images(shape=(4, 16, 12, 3), dtype="float32", seed=0):
    values = np.random.default_rng(seed).uniform(10.0, 250.0, size=shape)
    if dtype == "uint8":
        values = np.round(values)
    return tf.cast(values, dtype)


def _assert_hidden_in_cells(x, y, size, fill=0.0):
    """Every pixel unchanged or all-channel fill; every S x S cell uniform."""
    x, y = np.asarray(tf.cast(x, tf.float32)), np.asarray(tf.cast(y, tf.float32))
    kept = np.all(y == x, axis=-1)
    hidden = np.all(y == np.float32(fill), axis=-1)
    assert np.all(kept | hidden)
    for image in hidden.reshape((-1,) + hidden.shape[-2:]):
        for top in range(0, image.shape[0], size):
            for left in range(0, image.shape[1], size):
                cell = image[top:top + size, left:left + size]
                assert cell.all() or not cell.any()
    return hidden


def test_identity_unless_training():
    x = _images()
    layer = HideAndSeek(grid_sizes=(4,), hide_prob=1.0)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    np.testing.assert_array_equal(layer(x, training=True), tf.zeros_like(x))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "uint8"])
def test_training_hides_cells_and_keeps_dtype(dtype):
    x = _images(dtype=dtype)
    y = HideAndSeek(grid_sizes=(4,), hide_prob=0.5, seed=1)(x, training=True)
    assert y.dtype == x.dtype and y.shape == x.shape
    hidden = _assert_hidden_in_cells(x, y, 4)
    assert 0.1 < hidden.mean() < 0.9


def test_seeded_layers_repeat_the_same_sequence_and_calls_differ():
    x = _images()
    a, b = HideAndSeek(grid_sizes=(4,), seed=5), HideAndSeek(grid_sizes=(4,), seed=5)
    first_a, second_a = a(x, training=True), a(x, training=True)
    np.testing.assert_array_equal(first_a, b(x, training=True))
    np.testing.assert_array_equal(second_a, b(x, training=True))
    assert not np.array_equal(first_a, second_a)
    unseeded = HideAndSeek(grid_sizes=(4,))
    assert not np.array_equal(unseeded(x, training=True), unseeded(x, training=True))


def test_config_round_trip():
    layer = HideAndSeek(grid_sizes=(0, 16, 32), hide_prob=0.25, fill_value=(1.0, 2.0, 3.0),
                        seed=7, name="has")
    config = layer.get_config()
    assert config["grid_sizes"] == [0, 16, 32]
    assert config["hide_prob"] == 0.25
    assert config["fill_value"] == [1.0, 2.0, 3.0]
    assert config["seed"] == 7
    clone = HideAndSeek.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, HideAndSeek) and restored.get_config() == config
    x = _images()
    np.testing.assert_array_equal(clone(x, training=True), layer(x, training=True))


def test_layer_hides_like_hide_patches_with_the_generator_seed():
    x = _images()
    layer = HideAndSeek(grid_sizes=(4, 6), hide_prob=0.3, fill_value=2.0, seed=3)
    seed = keras.random.SeedGenerator(3).next()
    expected = hide_patches(x, (4, 6), hide_prob=0.3, fill_value=2.0, seed=seed)
    np.testing.assert_array_equal(layer(x, training=True), expected)


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match=r"hide_prob: .*2\.0"):
        HideAndSeek(hide_prob=2.0)
    with pytest.raises(ValueError, match=r"grid_sizes: .*-1"):
        HideAndSeek(grid_sizes=(-1,))
    with pytest.raises(ValueError, match=r"grid_sizes: .*empty"):
        HideAndSeek(grid_sizes=[])
    with pytest.raises(TypeError, match=r"`seed`.*'7'"):
        HideAndSeek(seed="7")


def test_first_layer_of_a_model_fit_predict_and_save(tmp_path):
    inputs = keras.Input((16, 12, 3))
    hidden = HideAndSeek(grid_sizes=(4,), hide_prob=1.0, name="has")(inputs)
    outputs = keras.layers.Dense(1, kernel_initializer="ones", name="dense")(
        keras.layers.GlobalAveragePooling2D()(hidden))
    model = keras.Model(inputs, outputs)
    x = _images()
    # Training sees fully hidden (zero) images, inference the originals.
    np.testing.assert_allclose(model(x, training=True), np.zeros((4, 1)), atol=1e-6)
    expected = tf.reduce_sum(tf.reduce_mean(x, axis=[1, 2]), axis=-1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5)
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(x, tf.ones([4, 1]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.get_layer("has"), HideAndSeek)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_inside_tf_data_fresh_masks():
    x = _images((16, 12, 3), dtype="uint8")
    layer = HideAndSeek(grid_sizes=(4,), seed=2)
    ds = tf.data.Dataset.from_tensors(x).repeat(3).map(lambda im: layer(im, training=True))
    first, second = list(ds), list(ds)
    for y in first:
        _assert_hidden_in_cells(x, y, 4)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], second[0])
    identity = tf.data.Dataset.from_tensors(x).map(lambda im: layer(im))
    np.testing.assert_array_equal(next(iter(identity)), x)


def test_under_xla():
    x = _images()
    layer = HideAndSeek(grid_sizes=(4,), seed=4)
    fn = tf.function(lambda im: layer(im, training=True), jit_compile=True)
    y1, y2 = fn(x), fn(x)
    _assert_hidden_in_cells(x, y1, 4)
    assert not np.array_equal(y1, y2)
