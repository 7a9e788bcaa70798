"""Tests for keras_has.localize.cams against hand-written numpy references."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.localize import cams as cam


@pytest.fixture(scope="module")
def tiny_model():
    model = models.get_model("tiny_gap", 5, input_shape=(32, 32, 3), widths=(8, 16), seed=0)
    # a clearly non-zero bias: CAMs must not include it
    classifier = model.get_layer("classifier")
    classifier.bias.assign(np.linspace(-3.0, 3.0, 5).astype("float32"))
    return model


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


def _numpy_cams(model, images, class_ids):
    feature_model = keras.Model(model.input, model.get_layer("cam_features").output)
    features = np.asarray(feature_model(images, training=False), dtype="float64")
    kernel = np.asarray(model.get_layer("classifier").kernel, dtype="float64")
    return np.stack([np.einsum("hwc,c->hw", features[b], kernel[:, k]) for b, k in enumerate(class_ids)])


def test_cams_from_features_hand_computed():
    features = np.array([[[[1.0, 2.0], [0.0, -1.0]]], [[[3.0, 0.5], [2.0, 2.0]]]], "float32")  # [2, 1, 2, 2]
    kernel = np.array([[1.0, 10.0, 0.0], [100.0, -1.0, 2.0]], "float32")  # [C=2, K=3]
    out = cam.cams_from_features(features, kernel, [0, 2]).numpy()
    # b=0, class 0: [1*1 + 2*100, 0*1 + -1*100]; b=1, class 2: [3*0 + 0.5*2, 2*0 + 2*2]
    np.testing.assert_array_equal(out, [[[201.0, -100.0]], [[1.0, 4.0]]])
    assert out.dtype == np.float32


def test_compute_cams_equals_numpy_einsum(tiny_model):
    images = _images()
    class_ids = np.array([0, 4, 2, 2])
    cams = cam.compute_cams(tiny_model, images, class_ids)
    assert cams.dtype == tf.float32 and cams.shape == (4, 16, 16)
    np.testing.assert_allclose(cams.numpy(), _numpy_cams(tiny_model, images, class_ids), rtol=1e-4, atol=1e-4)


def test_cam_mean_plus_bias_is_the_logit(tiny_model):
    # GAP is linear: mean_{i,j} cam_k + b_k == logit_k (no dropout in tiny_gap's head).
    images = _images(seed=1)
    class_ids = np.array([1, 3, 0, 4])
    cams, logits = cam.compute_cams_and_logits(tiny_model, images, class_ids)
    bias = tiny_model.get_layer("classifier").bias.numpy()
    picked = logits.numpy()[np.arange(4), class_ids]
    np.testing.assert_allclose(cams.numpy().mean(axis=(1, 2)) + bias[class_ids], picked, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits, tiny_model(images, training=False), rtol=1e-5, atol=1e-5)


def test_default_class_ids_are_the_top1_predictions(tiny_model):
    images = _images(seed=2)
    cams, logits = cam.compute_cams_and_logits(tiny_model, images)
    top1 = np.argmax(logits.numpy(), axis=-1)
    np.testing.assert_allclose(cams, cam.compute_cams(tiny_model, images, top1), rtol=1e-6, atol=1e-6)


def test_make_cam_model_shares_weights_and_returns_float32(tiny_model):
    cam_model = cam.make_cam_model(tiny_model)
    images = _images(n=2, seed=3)
    logits, features = cam_model(images, training=False)
    assert logits.dtype == tf.float32 and features.dtype == tf.float32
    assert features.shape == (2, 16, 16, 16)
    np.testing.assert_allclose(logits, tiny_model(images, training=False), rtol=1e-5, atol=1e-5)
    assert {id(v) for v in cam_model.weights} == {id(v) for v in tiny_model.weights}


def test_mixed_bfloat16_model_gives_float32_cams_matching_its_features():
    model = models.get_model("tiny_gap", 3, input_shape=(32, 32, 3), widths=(8, 16), dtype_policy="mixed_bfloat16")
    cam_model = cam.make_cam_model(model)
    images = _images(n=2, seed=4)
    logits, features = cam_model(images, training=False)
    assert logits.dtype == tf.float32 and features.dtype == tf.float32
    cams = cam.compute_cams(model, images, [2, 0])
    assert cams.dtype == tf.float32
    kernel = model.get_layer("classifier").kernel.numpy()
    expected = np.einsum("bhwc,cb->bhw", features.numpy(), kernel[:, [2, 0]])
    np.testing.assert_allclose(cams, expected, rtol=1e-5, atol=1e-5)


def test_compute_cams_inside_tf_function_with_dynamic_batch(tiny_model):
    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32), tf.TensorSpec([None], tf.int32)])
    def serve(images, class_ids):
        return cam.compute_cams(tiny_model, images, class_ids)

    for n in (1, 3):
        images, ids = _images(n=n, seed=5), np.arange(n, dtype="int32")
        np.testing.assert_allclose(serve(images, ids), _numpy_cams(tiny_model, images, ids), rtol=1e-4, atol=1e-4)


def test_compute_cams_on_reference_model_has_reference_size():
    model = models.get_model("alexnet_gap", 3, input_shape=(99, 99, 3), dropout=0.0)
    assert cam.compute_cams(model, _images(n=1, size=99), [1]).shape == (1, 3, 3)


def test_errors():
    no_cam = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="cam_features"):
        cam.make_cam_model(no_cam)
    features = np.zeros((2, 2, 2, 4), "float32")
    with pytest.raises(ValueError, match="channels"):
        cam.cams_from_features(features, np.zeros((3, 5), "float32"), [0, 1])
    with pytest.raises(ValueError, match="class_ids"):
        cam.cams_from_features(features, np.zeros((4, 5), "float32"), [0, 1, 2])
    with pytest.raises(ValueError, match="integers"):
        cam.cams_from_features(features, np.zeros((4, 5), "float32"), [0.0, 1.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        cam.cams_from_features(features, np.zeros((4, 5), "float32"), [0, 5])


def test_compute_cams_rejects_bad_images(tiny_model):
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        cam.compute_cams(tiny_model, np.zeros((32, 32, 3), "float32"), [0])
    with pytest.raises(ValueError, match="normalised floats"):
        cam.compute_cams(tiny_model, np.zeros((1, 32, 32, 3), "uint8"), [0])
