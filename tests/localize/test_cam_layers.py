"""CAMs of Keras classifiers that are not keras-has models: finding the feature map
through nested backbones and Sequential models, naming layers by path, the GAP + Dense
identity Grad-CAM == ReLU(CAM), and the one-line errors for bad input."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.localize import boxes, cams, graph
from keras_has.models.folding import foldable_pairs


def _images(n, size, seed=0, channels=3):
    return np.random.default_rng(seed).normal(size=(n, size, size, channels)).astype("float32")


def _small_backbone(size=16, pooling=None, name="backbone"):
    """A small functional backbone (named layers: Keras' automatic names depend on what
    the process built before)."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.ReLU(name="act")(x)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg")(x)
    return keras.Model(inputs, x, name=name)


@pytest.fixture(scope="module")
def mobilenet_classifier():
    """The usual transfer-learning model: a keras.applications backbone nested as one
    layer, GAP, dropout, a softmax Dense; default layer names."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3),
                                          alpha=0.35)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))


def test_gradcam_equals_relu_cam_on_a_nested_keras_application(mobilenet_classifier):
    # GAP + Dense: dS_k/dA = W[:, k] / (h w) everywhere, so Grad-CAM's weights are the
    # class weights / (h w) and normalised Grad-CAM == normalised ReLU(CAM).
    model = mobilenet_classifier
    plan = cams.plan_cams(model, "gradcam")
    assert plan.layer.path == "mobilenetv2_0.35_96/out_relu"
    images = _images(6, 96)
    cam = cams.compute_cams(model, images, method="cam").numpy()
    grad = cams.compute_cams(model, images, method="gradcam").numpy()
    assert cam.shape == grad.shape == (6, 3, 3)
    assert (cam.max(axis=(1, 2)) > 0).sum() >= 2 and (cam < 0).any()  # ReLU has work to do
    np.testing.assert_allclose(boxes.normalize_cams(grad), boxes.normalize_cams(np.maximum(cam, 0)),
                               atol=1e-4)
    # the CAM is the features times the class weights (bias excluded), of the top-1 class
    features = model.layers[1](images, training=False).numpy()  # the backbone
    dense = model.layers[-1]
    probabilities = model(images).numpy()
    top1 = probabilities.argmax(axis=1)
    want = np.einsum("bhwc,cb->bhw", features, dense.kernel.numpy()[:, top1])
    np.testing.assert_allclose(cam, want, rtol=1e-4, atol=1e-5)
    # logits: the softmax Dense's pre-activation
    _, logits = cams.compute_cams_and_logits(model, images, method="gradcam")
    np.testing.assert_allclose(tf.nn.softmax(logits), probabilities, rtol=1e-5, atol=1e-6)


def test_gap_inside_the_backbone_and_paths():
    backbone = _small_backbone(pooling="avg")
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)))
    head = graph.find_head(model)
    assert head.features.path == "backbone/act"
    assert [type(r.layer).__name__ for r in head.layers] == ["GlobalAveragePooling2D", "Dense"]
    images = _images(2, 16)
    default = cams.compute_cams(model, images, method="gradcam").numpy()
    for name in ("backbone/act", "act"):  # a path, or a bare name unique in the nested models
        np.testing.assert_array_equal(cams.compute_cams(model, images, method="gradcam", layer=name), default)
    assert cams.compute_cams(model, images, method="gradcam", layer="backbone/conv_a").shape == (2, 16, 16)
    assert cams.compute_cams(model, images, method="cam").shape == (2, 8, 8)


def test_sequential_models_top_level_and_nested():
    seq = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
                            keras.layers.Conv2D(5, 3, activation="relu", name="c2"),
                            keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dense(2, name="fc")])
    assert cams.plan_cams(seq, "gradcam").layer.path == "c2"
    images = _images(3, 12)
    assert cams.compute_cams(seq, images, method="gradcam").shape == (3, 8, 8)
    assert cams.compute_cams(seq, images, method="layercam", layer="c1").shape == (3, 10, 10)
    # a Sequential feature extractor nested in a functional model
    features = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, name="c1")],
                                name="stem")
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU(name="act")(features(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    assert cams.plan_cams(model, "gradcam").layer.path == "act"
    assert cams.plan_cams(model, "gradcam", layer="stem/c1").layer.path == "stem/c1"
    got = cams.compute_cams(model, images, method="gradcam", layer="stem")  # the nested model's output
    np.testing.assert_allclose(got, cams.compute_cams(model, images, method="gradcam", layer="stem/c1"))


def test_cam_rule_unchanged_for_keras_has_models():
    model = models.get_model("tiny_gap", 4, input_shape=(16, 16, 3), widths=(4, 8), seed=3)
    images = _images(3, 16, seed=3)
    ids = np.array([0, 3, 1])
    features = keras.Model(model.inputs[0], model.get_layer("cam_features").output)(images).numpy()
    want = np.einsum("bhwc,cb->bhw", features, model.get_layer("classifier").kernel.numpy()[:, ids])
    for got in (cams.compute_cams(model, images, ids), cams.compute_cams(model, images, class_ids=ids),
                cams.compute_cams(model, images, "cam", class_ids=ids)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert cams.plan_cams(model, "cam").kind == "rule"


def test_computing_cams_does_not_change_the_model_graph():
    # The forward pass runs the layers on tensors and adds no Keras nodes: a second
    # inbound node on the convolution would stop its batch norm from folding.
    inner = keras.Input((16, 16, 3))
    x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, name="conv")(inner))
    backbone = keras.Model(inner, keras.layers.ReLU(name="act")(x), name="backbone")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    assert foldable_pairs(model) == [("conv", "bn")]
    for method in ("cam", "gradcam", "scorecam", "ablationcam", "eigencam"):
        cams.compute_cams(model, _images(1, 16), method=method, batch_size=8)
    cams.compute_cams(model, _images(1, 16), method="gradcam", layer="backbone/conv")
    assert foldable_pairs(model) == [("conv", "bn")]


# --------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def small_model():
    backbone = _small_backbone()
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_unknown_layer_lists_candidates(small_model):
    with pytest.raises(ValueError, match="has no layer 'conv5'") as err:
        cams.compute_cams(small_model, _images(1, 16), method="gradcam", layer="conv5")
    assert "backbone/act" in _one_line(err) and "backbone/conv_a" in str(err.value)
    with pytest.raises(ValueError, match="has no layer 'other/act'"):
        cams.compute_cams(small_model, _images(1, 16), method="gradcam", layer="other/act")


def test_layer_without_spatial_dimensions(small_model):
    with pytest.raises(ValueError, match=r"'gap' .*output shape \(None, 8\).*spatial") as err:
        cams.compute_cams(small_model, _images(1, 16), method="gradcam", layer="gap")
    _one_line(err)


def test_multi_output_model_needs_output():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    aux = keras.layers.Dense(2, name="aux")(pooled)
    main = keras.layers.Dense(3, name="main")(pooled)
    model = keras.Model(inputs, [aux, main])
    images = _images(2, 16)
    with pytest.raises(ValueError, match=r"2 outputs \['aux', 'main'\]; pass output=") as err:
        cams.compute_cams(model, images, method="gradcam")
    _one_line(err)
    by_name = cams.compute_cams_and_logits(model, images, method="cam", output="main")
    by_index = cams.compute_cams_and_logits(model, images, method="cam", output=1)
    np.testing.assert_array_equal(by_name[0], by_index[0])
    np.testing.assert_allclose(by_name[1], model(images)[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no output 'x'"):
        cams.compute_cams(model, images, output="x")


def test_class_id_out_of_range(small_model):
    for bad in ([0, 3], [-1, 0]):
        with pytest.raises(ValueError, match=r"`class_ids` must be in \[0, 3\)") as err:
            cams.compute_cams(small_model, _images(2, 16), method="scorecam", class_ids=bad)
        _one_line(err)
    with pytest.raises(ValueError, match="2 entries for a batch of 3"):
        cams.compute_cams(small_model, _images(3, 16), method="gradcam", class_ids=[0, 1])


def test_wrong_image_size_for_a_fixed_input_model(small_model):
    with pytest.raises(ValueError, match="takes 16x16 images, received 20x20") as err:
        cams.compute_cams(small_model, _images(1, 20), method="gradcam")
    _one_line(err)
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        cams.compute_cams(small_model, _images(1, 16, channels=1), method="gradcam")


def test_cam_on_a_head_that_is_not_gap_dense():
    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=4)
    with pytest.raises(ValueError, match=r"'cam' needs global average pooling \+ Dense.*flatten.*"
                                         r"fc1.*predictions.*method='gradcam'") as err:
        cams.compute_cams(model, _images(1, 32), method="cam")
    _one_line(err)
    assert cams.plan_cams(model, "gradcam").layer.path == "block5_pool"
    # cam at another layer than the one feeding the head
    seq = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="a"),
                            keras.layers.Conv2D(2, 3, name="b"), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="reads the map that feeds the GAP \\+ Dense head \\('b'\\)"):
        cams.compute_cams(seq, _images(1, 8), method="cam", layer="a")


def test_unknown_method_and_batch_size(small_model):
    with pytest.raises(ValueError, match="method: expected one of cam, gradcam"):
        cams.compute_cams(small_model, _images(1, 16), method="gradcam++")
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        cams.compute_cams(small_model, _images(1, 16), method="scorecam", batch_size=0)
    with pytest.raises(ValueError, match="class_ids given twice"):
        cams.compute_cams(small_model, _images(1, 16), [0], class_ids=[0])


def test_ambiguous_bare_name_and_bad_output():
    inputs = keras.Input((16, 16, 3))
    a = _small_backbone(name="left")(inputs)
    b = _small_backbone(name="right")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add(name="sum")([a, b]))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"'act' names 2 layers .*left/act, right/act.*full path"):
        cams.compute_cams(model, _images(1, 16), method="gradcam", layer="act")
    assert cams.compute_cams(model, _images(1, 16), method="gradcam", layer="right/act").shape == (1, 8, 8)
    assert cams.plan_cams(model, "gradcam").layer.path == "sum"
    with pytest.raises(ValueError, match=r"output: expected an index in \[0, 1\)"):
        cams.compute_cams(model, _images(1, 16), method="gradcam", output=3)
