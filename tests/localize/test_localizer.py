"""compute_boxes: one call from images to classes, scores, maps and boxes."""
import keras
import numpy as np
import pytest

import keras_has
from keras_has.localize import boxes


def _model(activation):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation=activation)(x))
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.mark.parametrize("activation", [None, "softmax", "sigmoid"])
def test_scores_are_the_models_probabilities_and_boxes_follow_the_maps(activation):
    model = _model(activation)
    images = np.random.default_rng(0).uniform(-1, 1, (5, 16, 16, 3)).astype("float32")
    out = keras_has.compute_boxes(model, images, method="gradcam", class_ids=[2, 1, 0, 0, 1],
                                  normalization="max", threshold=0.3)
    predicted = model.predict(images, verbose=0)
    if activation is None:  # logits: their softmax
        e = np.exp(predicted - predicted.max(1, keepdims=True))
        predicted = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(out.probabilities, predicted, atol=1e-5)
    assert out.class_ids.tolist() == [2, 1, 0, 0, 1]
    np.testing.assert_allclose(out.scores, predicted[np.arange(5), [2, 1, 0, 0, 1]], atol=1e-5)
    cams = keras_has.compute_cams(model, images, "gradcam", class_ids=[2, 1, 0, 0, 1])
    maps = boxes.normalize_cams(boxes.resize_cams(cams, (16, 16)), "max")
    np.testing.assert_allclose(out.maps, maps, atol=1e-6)
    np.testing.assert_array_equal(out.boxes, boxes.boxes_from_cams(maps, 0.3))
    with pytest.raises(ValueError, match="threshold"):
        keras_has.compute_boxes(model, images, threshold=1.5)
