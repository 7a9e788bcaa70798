"""The PyTorch versions of the models (benchmark-only) match the Keras architectures.

Skipped without PyTorch (an optional extra: pip install -e .[bench])."""
import pathlib
import sys

import numpy as np
import pytest

from keras_has import models

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
import torch_models  # noqa: E402

SIZES = {"alexnet_gap": 67, "googlenet_gap": 32, "vgg16_gap": 32, "resnet50_gap": 32, "mobilenetv2_gap": 32,
         "inceptionv3_gap": 75}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_parameter_counts_equal_the_keras_models(name):
    size = SIZES[name]
    keras_model = models.get_model(name, 7, input_shape=(size, size, 3))
    expected = (
        sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights),
        sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights),
    )
    torch_model = torch_models.MODELS[name](7)
    assert torch_models.parameter_counts(torch_model) == expected
    torch_model.eval()
    with torch.inference_mode():
        logits = torch_model(torch.zeros(2, 3, size, size))
    assert tuple(logits.shape) == (2, 7)


def test_cam_feature_sizes_equal_the_keras_models():
    # the last feature map before pooling has the Keras model's spatial size at 224 px
    for name in ("resnet50_gap", "mobilenetv2_gap", "googlenet_gap"):
        keras_hw = tuple(models.get_model(name, 3).get_layer("cam_features").output.shape[1:3])
        body = torch_models.MODELS[name](3)[:-1].eval()
        with torch.inference_mode():
            assert tuple(body(torch.zeros(1, 3, 224, 224)).shape[2:]) == keras_hw, name
