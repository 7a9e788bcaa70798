"""keras_has.data.preprocessing against keras.applications' own preprocess_input, the fill value
in every value space, and the pipelines applying it."""
import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import data
from keras_has.data import preprocessing as prep_lib
from keras_has.data.preprocessing import Preprocessing, make_preprocessing, resolve_mode

# model name -> keras.applications module whose preprocess_input the weights expect
APPLICATION_PREPROCESS = {
    "vgg16_gap": keras.applications.vgg16.preprocess_input,
    "resnet50_gap": keras.applications.resnet50.preprocess_input,
    "mobilenetv2_gap": keras.applications.mobilenet_v2.preprocess_input,
    "inceptionv3_gap": keras.applications.inception_v3.preprocess_input,
}

PIXELS = np.array([[[[0, 0, 0], [255, 255, 255], [10, 100, 200]],
                    [[200, 30, 7], [128, 64, 32], [1, 254, 77]]]], np.float32)  # [1, 2, 3, 3]


@pytest.mark.parametrize("model", sorted(APPLICATION_PREPROCESS))
def test_pretrained_modes_equal_keras_applications(model):
    prep = make_preprocessing(resolve_mode("auto", model, pretrained=True))
    expected = APPLICATION_PREPROCESS[model](PIXELS.copy())
    np.testing.assert_allclose(prep.apply(tf.constant(PIXELS)).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(prep.apply_numpy(PIXELS), expected, atol=1e-4)


def test_mode_per_backbone():
    assert resolve_mode("auto", "vgg16_gap", True) == "caffe"
    assert resolve_mode("auto", "resnet50_gap", True) == "caffe"
    assert resolve_mode("auto", "mobilenetv2_gap", True) == "tf"
    assert resolve_mode("auto", "inceptionv3_gap", True) == "tf"
    # Random initialisation keeps the dataset statistics.
    assert resolve_mode("auto", "mobilenetv2_gap", False) == "dataset"
    assert resolve_mode("auto", "alexnet_gap", False) == "dataset"
    # An explicit mode wins.
    assert resolve_mode("torch", "vgg16_gap", True) == "torch"


def test_torch_mode_equals_keras_imagenet_utils():
    from keras.src.applications import imagenet_utils

    expected = imagenet_utils.preprocess_input(PIXELS.copy(), mode="torch")
    np.testing.assert_allclose(make_preprocessing("torch").apply_numpy(PIXELS), expected,
                               atol=1e-4)


def test_dataset_mode_is_mean_std():
    prep = make_preprocessing("dataset", (100.0, 110.0, 120.0), (50.0, 60.0, 70.0))
    expected = (PIXELS - [100.0, 110.0, 120.0]) / [50.0, 60.0, 70.0]
    np.testing.assert_allclose(prep.apply_numpy(PIXELS), expected, rtol=1e-6)


@pytest.mark.parametrize("mode", ["dataset", "caffe", "tf", "torch", "none"])
def test_fill_is_the_dataset_mean_pixel_in_each_value_space(mode):
    mean, std = (120.5, 100.25, 80.0), (60.0, 55.0, 50.0)
    prep = make_preprocessing(mode, mean, std)
    fill = prep.value_of(mean)
    # Independent expectation: the mean pixel as an image through the mode's own formula.
    pixel = np.array(mean, np.float32).reshape(1, 1, 1, 3)
    if mode == "dataset":
        expected = [0.0, 0.0, 0.0]
    elif mode == "caffe":
        expected = keras.applications.vgg16.preprocess_input(pixel.copy()).reshape(3)
    elif mode == "tf":
        expected = [m / 127.5 - 1.0 for m in mean]
    elif mode == "none":  # the pixels as they are
        expected = list(mean)
    else:
        expected = [(m / 255.0 - a) / b for m, a, b in
                    zip(mean, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    np.testing.assert_allclose(fill, expected, atol=1e-5)
    if mode == "caffe":  # BGR: the blue mean comes first
        assert fill[0] == pytest.approx(80.0 - 103.939, abs=1e-4)


@pytest.mark.parametrize("mode", ["dataset", "caffe", "tf", "torch", "none"])
def test_to_pixels_inverts_apply(mode):
    prep = make_preprocessing(mode, (120.0, 110.0, 100.0), (50.0, 60.0, 70.0))
    np.testing.assert_array_equal(prep.to_pixels(prep.apply_numpy(PIXELS)),
                                  PIXELS.astype(np.uint8))


def test_json_round_trip_and_bad_values():
    for mode in ("caffe", "tf", "torch", "none"):
        prep = make_preprocessing(mode)
        assert Preprocessing.from_json(json.loads(json.dumps(prep.to_json()))) == prep
    with pytest.raises(ValueError, match="preprocessing: expected one of"):
        resolve_mode("imagenet", "vgg16_gap", True)
    with pytest.raises(ValueError, match="preprocessing: expected one of"):
        make_preprocessing("bgr")
    with pytest.raises(ValueError, match="needs the dataset's mean and std"):
        make_preprocessing("dataset")
    with pytest.raises(ValueError, match="std: expected 3 positive"):
        Preprocessing("dataset", (0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="x.json: missing keys"):
        Preprocessing.from_json({"mode": "tf"}, where="x.json")
    with pytest.raises(ValueError, match="'auto' does not know"):
        resolve_mode("auto", "alexnet_gap", True)
    assert set(prep_lib.MODES) == {"auto", "dataset", "caffe", "tf", "torch", "none"}


# ------------------------------------------------------------------ pipelines
@pytest.fixture(scope="module")
def folder(tiny_wsol_folder):
    return tiny_wsol_folder


def test_eval_pipeline_applies_the_preprocessing(folder):
    raw = next(iter(data.make_eval_dataset(folder, 32, 4, mean=(0, 0, 0), std=(1, 1, 1))))
    for mode in ("caffe", "tf"):
        prep = make_preprocessing(mode)
        batch = next(iter(data.make_eval_dataset(folder, 32, 4, preprocessing=prep)))
        np.testing.assert_allclose(batch["image"].numpy(),
                                   prep.apply_numpy(raw["image"].numpy()), atol=1e-4)
    with pytest.raises(ValueError, match="either `preprocessing` or `mean`/`std`"):
        data.make_eval_dataset(folder, 32, 4, mean=(0, 0, 0), std=(1, 1, 1),
                               preprocessing=make_preprocessing("tf"))


@pytest.mark.parametrize("mode", ["caffe", "tf"])
def test_train_pipeline_hides_with_the_mean_pixel_in_model_space(folder, mode):
    prep = make_preprocessing(mode)
    mean, _ = data.get_normalization(folder)
    images, _ = next(iter(data.make_train_dataset(
        folder, 32, 4, seed=0, preprocessing=prep,
        hiding={"grid_sizes": (8,), "hide_prob": 1.0})))  # every patch hidden
    expected = np.broadcast_to(np.array(prep.value_of(mean), np.float32), images.shape)
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-4)
    # Without hiding the images are the preprocessed crops (in the mode's range).
    images, _ = next(iter(data.make_train_dataset(folder, 32, 4, seed=0, preprocessing=prep)))
    if mode == "tf":
        assert images.numpy().min() >= -1.0 and images.numpy().max() <= 1.0


def _apply_with_channel_constants(prep, images):
    """The per-channel formula with plain [3] constants (what apply must equal)."""
    images = tf.cast(images, tf.float32)
    if prep.reverses_channels:
        images = tf.reverse(images, axis=[-1])
    return (images - tf.constant(prep.mean, tf.float32)) / tf.constant(prep.std, tf.float32)


@pytest.mark.parametrize("mode", ["dataset", "caffe", "tf", "torch", "none"])
def test_apply_is_the_per_channel_formula_bit_for_bit_whatever_the_shape(mode):
    # apply's constants come as a scalar, an [H, W, 3] plane or [3] by the input's
    # static shape; in every way TensorFlow runs it, each element must get what the
    # plain per-channel formula gives there, bit for bit (and NumPy's to a rounding).
    prep = make_preprocessing(mode, (100.5, 110.25, 120.0), (50.0, 60.5, 70.25))
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    reference = functools.partial(_apply_with_channel_constants, prep)
    dynamic = [tf.TensorSpec([None, None, None, 3])]
    ways = {
        "eager batch": lambda f: f(tf.constant(pixels)),
        "eager image": lambda f: f(tf.constant(pixels[0]))[None],
        "tf.data map": lambda f: tf.stack(list(
            tf.data.Dataset.from_tensor_slices(pixels).map(f))),
        "tf.function, dynamic shape": lambda f: tf.function(f, input_signature=dynamic)(pixels),
    }
    for way, run in ways.items():
        got, expected = run(prep.apply).numpy(), run(reference).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=way)
    order = [2, 1, 0] if prep.reverses_channels else [0, 1, 2]
    np.testing.assert_allclose(prep.apply(tf.constant(pixels)).numpy(),
                               (pixels[..., order] - np.float32(prep.mean)) / np.float32(prep.std),
                               rtol=3e-7, atol=1e-7)
