"""The CAM family of keras_has.localize.cams against values computed by hand.

The hand model: the image is the feature map (a ReLU'd identity 1x1 conv named
`features`, fed non-negative images), followed by a 1x1 conv + ReLU (`mix`), global
average pooling and a Dense (`scores`). Its class scores, their gradient with respect to
the features and every method's map are written out below in NumPy (float64), from the
published formulas, independently of the TensorFlow code under test.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import models
from keras_has.localize import boxes, cam_methods, cams

# Two images, 3x3 maps, two channels (non-negative: they are the ReLU'd features).
A = np.array([
    [[[0, 1], [1, 0], [2, 0]],
     [[3, 2], [0, 1], [1, 3]],
     [[2, 0], [2, 1], [0, 2]]],
    [[[1, 1], [0, 2], [0, 0]],
     [[2, 0], [4, 1], [1, 1]],
     [[0, 3], [1, 0], [2, 2]]],
], np.float64)
V = np.array([[1.0, -0.5], [-1.0, 2.0]])      # mix kernel [C_in, C_out]
C = np.array([-0.5, -1.0])                     # mix bias (a [0, 0] pixel gates both off)
W = np.array([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0]])  # scores kernel [C, K]
B = np.array([0.1, 0.0, -0.1])                 # scores bias
CLASS_IDS = np.array([0, 2])
# The CAM layer: before the nonlinear head (the default would be `mix`, the map feeding GAP).
LAYER = "features"


def hand_model(activation=None):
    inputs = keras.Input((3, 3, 2))
    x = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="features")(inputs)
    x = keras.layers.Conv2D(2, 1, activation="relu", name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, activation=activation, name="scores")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("features").set_weights([np.eye(2).reshape(1, 1, 2, 2)])
    model.get_layer("mix").set_weights([V.reshape(1, 1, 2, 2), C])
    model.get_layer("scores").set_weights([W, B])
    return model


def scores(a):
    """Class scores (logits) of feature maps a [N, 3, 3, 2]."""
    z = np.maximum(a @ V + C, 0.0)
    return z.mean(axis=(1, 2)) @ W + B


def grads(a, k):
    """dS_k / dA: the mix ReLU's gate, the 1/9 of the average, W[:, k], back through V."""
    gate = (a @ V + C > 0).astype(np.float64)  # [N, 3, 3, D]
    return np.einsum("cd,nijd,dn->nijc", V, gate, W[:, k]) / 9.0


def weighted(a, w):
    return np.einsum("nijc,nc->nij", a, w)


def relu(x):
    return np.maximum(x, 0.0)


def expected(method, a, k):
    g = grads(a, k)
    if method == "gradcam":
        return relu(weighted(a, g.mean(axis=(1, 2))))
    if method == "gradcam_plus_plus":
        alpha = g ** 2 / (2 * g ** 2 + a.sum(axis=(1, 2))[:, None, None, :] * g ** 3 + 1e-6)
        alpha = np.where(g != 0, alpha, 0.0)
        return relu(weighted(a, (alpha * relu(g)).sum(axis=(1, 2))))
    if method == "xgradcam":
        return relu(weighted(a, (g * a).sum(axis=(1, 2)) / (a.sum(axis=(1, 2)) + 1e-7)))
    if method == "layercam":
        return relu((relu(g) * a).sum(axis=-1))
    if method == "scorecam":
        # Input and map are both 3x3: the corner-aligned upsampling is the identity.
        lo, hi = a.min(axis=(1, 2)), a.max(axis=(1, 2))
        s = np.zeros((len(a), 2))
        for c in range(2):
            mask = (a[..., c] - lo[:, c, None, None]) / (hi[:, c, None, None] - lo[:, c, None, None] + 1e-8)
            s[:, c] = scores(a * mask[..., None])[np.arange(len(a)), k]
        w = np.exp(s - s.max(axis=1, keepdims=True))
        return relu(weighted(a, w / w.sum(axis=1, keepdims=True)))
    if method == "ablationcam":
        full = scores(a)[np.arange(len(a)), k]
        s = np.zeros((len(a), 2))
        for c in range(2):
            ablated = a.copy()
            ablated[..., c] = 0.0
            s[:, c] = scores(ablated)[np.arange(len(a)), k]
        return relu(weighted(a, (full[:, None] - s) / full[:, None]))
    if method == "eigencam":
        out = []
        for image in a:
            x = image.reshape(9, 2)
            x = x - x.mean(axis=0)
            projection = x @ np.linalg.svd(x)[2][0]
            if abs(projection.min()) > abs(projection.max()):
                projection = -projection
            out.append(relu(projection).reshape(3, 3))
        return np.stack(out)
    raise AssertionError(method)


@pytest.fixture(scope="module")
def model():
    return hand_model()


def test_hand_model_matches_the_numpy_forward(model):
    np.testing.assert_allclose(model(A.astype("float32")), scores(A), rtol=1e-6, atol=1e-6)
    assert cams.plan_cams(model, "gradcam").layer.path == "mix"


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus", "xgradcam", "layercam",
                                    "scorecam", "eigencam", "ablationcam"])
def test_method_equals_hand_computation(model, method):
    want = expected(method, A, CLASS_IDS)
    assert np.abs(want).max() > 0.1  # a real map, not an all-zero coincidence
    got = cams.compute_cams(model, A.astype("float32"), method=method, layer=LAYER,
                            class_ids=CLASS_IDS, batch_size=3)
    assert got.dtype == tf.float32 and got.shape == (2, 3, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_hand_gradients_have_both_signs_and_zeros():
    # relu(G) (Grad-CAM++, LayerCAM) and the sign of XGrad-CAM's weights only matter if
    # the gradients at the hand layer take both signs; the ReLU gate of `mix` gives zeros.
    g = grads(A, CLASS_IDS)
    assert (g == 0).any() and (g > 0).any() and (g < 0).any()


def test_methods_read_the_logits_of_a_softmax_dense(model):
    # Same weights, softmax output: gradients and scores are still of the logits.
    soft = hand_model("softmax")
    for method in ("gradcam", "scorecam", "ablationcam"):
        np.testing.assert_allclose(
            cams.compute_cams(soft, A.astype("float32"), method=method, layer=LAYER, class_ids=CLASS_IDS),
            expected(method, A, CLASS_IDS), rtol=1e-5, atol=1e-6)
    _, logits = cams.compute_cams_and_logits(soft, A.astype("float32"), method="gradcam")
    np.testing.assert_allclose(logits, scores(A), rtol=1e-6, atol=1e-6)


def test_default_class_is_top1(model):
    top1 = np.argmax(scores(A), axis=1)
    assert not np.array_equal(top1, CLASS_IDS)
    np.testing.assert_allclose(cams.compute_cams(model, A.astype("float32"), method="layercam", layer=LAYER),
                               expected("layercam", A, top1), rtol=1e-5, atol=1e-6)


def test_scorecam_batch_size_does_not_change_the_maps(model):
    maps = [cams.compute_cams(model, A.astype("float32"), method="scorecam", layer=LAYER,
                                  batch_size=n).numpy()
            for n in (1, 3, 4, 64)]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], rtol=1e-6, atol=1e-7)


def test_upsample_matrix_aligns_corners():
    np.testing.assert_allclose(cam_methods.upsample_matrix(3, 2), [[1, 0], [0.5, 0.5], [0, 1]])
    np.testing.assert_allclose(cam_methods.upsample_matrix(5, 3),
                               [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0.5, 0.5], [0, 0, 1]])
    np.testing.assert_allclose(cam_methods.upsample_matrix(2, 2), np.eye(2))
    np.testing.assert_allclose(cam_methods.upsample_matrix(3, 1), np.ones((3, 1)))


def test_scorecam_upsamples_masks_to_the_input():
    # A 4x4 image, 2x2 features (average pooling): each channel's map is upsampled to
    # 4x4 with aligned corners and min-max normalised before it masks the image.
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.AveragePooling2D(2, name="features")(inputs)
    x = keras.layers.Conv2D(2, 1, activation="relu", name="shift")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="scores")(x))
    model.get_layer("shift").set_weights([np.eye(2).reshape(1, 1, 2, 2), np.full(2, -0.5)])
    kernel = np.array([[1.0], [0.5]])
    model.get_layer("scores").set_weights([kernel])
    image = np.stack([np.arange(16.0).reshape(4, 4) / 8.0, np.eye(4)[::-1] * 2.0], axis=-1)

    def forward(x):  # the model by hand: [4, 4, 2] -> score
        a = x.reshape(2, 2, 2, 2, 2).mean(axis=(1, 3))
        return (np.maximum(a - 0.5, 0.0).mean(axis=(0, 1)) @ kernel)[0]

    a = image.reshape(2, 2, 2, 2, 2).mean(axis=(1, 3))  # [2, 2, C]
    up = np.array([[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]])  # 2 -> 4, corners aligned
    s = []
    for c in range(2):
        mask = up @ a[..., c] @ up.T
        mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-8)
        s.append(forward(image * mask[..., None]))
    w = np.exp(s) / np.exp(s).sum()
    want = np.maximum(a @ w, 0.0)
    assert abs(s[0] - s[1]) > 0.05  # the weights depend on the masks
    got = cams.compute_cams(model, image[None].astype("float32"), method="scorecam",
                            layer="features", class_ids=[0])
    np.testing.assert_allclose(got[0], want, rtol=1e-5)


def test_gradient_methods_on_a_frozen_model(model):
    frozen = hand_model()
    frozen.trainable = False
    np.testing.assert_allclose(cams.compute_cams(frozen, A.astype("float32"), method="gradcam",
                                                 layer=LAYER, class_ids=CLASS_IDS),
                               expected("gradcam", A, CLASS_IDS), rtol=1e-5, atol=1e-6)


def test_gradcam_in_a_tf_function(model):
    @tf.function(input_signature=[tf.TensorSpec([None, 3, 3, 2], tf.float32), tf.TensorSpec([None], tf.int32)])
    def run(images, ids):
        return cams.compute_cams(model, images, method="gradcam", layer=LAYER, class_ids=ids)

    np.testing.assert_allclose(run(A.astype("float32"), CLASS_IDS.astype("int32")),
                               expected("gradcam", A, CLASS_IDS), rtol=1e-5, atol=1e-6)


def test_mixed_bfloat16_model_gives_float32_gradcam():
    model = models.get_model("tiny_gap", 3, input_shape=(16, 16, 3), widths=(4, 8), seed=0,
                             dtype_policy="mixed_bfloat16")
    images = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    got, logits = cams.compute_cams_and_logits(model, images, method="gradcam")
    assert got.dtype == tf.float32 and logits.dtype == tf.float32 and got.shape == (2, 8, 8)
    assert np.isfinite(got.numpy()).all()


@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "eigencam"])
def test_keras_has_model_default_layer_is_cam_features(method):
    model = models.get_model("tiny_gap", 3, input_shape=(16, 16, 3), widths=(4, 8), seed=1)
    images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(cams.compute_cams(model, images, method=method),
                               cams.compute_cams(model, images, method=method, layer="cam_features"))
    assert cams.plan_cams(model, method).layer.path == "cam_features"


# ---------------------------------------------------------------- normalization


def test_normalizations_by_hand():
    x = np.array([[-1.0, 0.0, 1.0], [2.0, 3.0, 4.0]])
    np.testing.assert_allclose(boxes.normalize_cams(x)[0], (x + 1) / 5)
    np.testing.assert_allclose(boxes.normalize_cams(x, "max")[0], np.maximum(x, 0) / 4)
    # 6 pixels, percentile 0.5: q = sorted(x)[3] = 2
    np.testing.assert_allclose(boxes.normalize_cams(x, "ivr", percentile=0.5)[0],
                               [[0, 0, 0], [0, 0.5, 1]])
    # percentile 0 is min-max
    np.testing.assert_allclose(boxes.normalize_cams(x, "ivr", percentile=0.0), boxes.normalize_cams(x))
    # default percentile: q = sorted(x)[int(6 * 0.45)] = sorted(x)[2] = 1
    np.testing.assert_allclose(boxes.normalize_cams(x, "ivr")[0], np.maximum(x - 1, 0) / 3)
    assert boxes.IVR_PERCENTILE == 0.45


def test_normalizations_degenerate_maps_are_zero():
    maps = np.stack([np.full((2, 2), 3.0), -np.arange(4.0).reshape(2, 2), np.array([[np.nan, 1], [2, 3]])])
    for norm in boxes.NORMALIZATIONS:
        out = boxes.normalize_cams(maps, norm)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out[0], 0)
        np.testing.assert_array_equal(out[2], 0)
    # all values <= 0: nothing to keep for `max`; min-max still spreads them
    np.testing.assert_array_equal(boxes.normalize_cams(maps, "max")[1], 0)
    assert boxes.normalize_cams(maps)[1].max() == 1.0


def test_normalization_errors():
    with pytest.raises(ValueError, match="normalization: expected one of"):
        boxes.normalize_cams(np.zeros((2, 2)), "zscore")
    with pytest.raises(ValueError, match=r"percentile: expected a fraction in \[0, 1\)"):
        boxes.normalize_cams(np.zeros((2, 2)), "ivr", percentile=1.0)
