"""standard_layers_model: the speed layers become the standard Keras layers they stand
for, the function and weights are kept, and the saved file loads in plain Keras."""
import subprocess
import sys

import keras
import numpy as np

from keras_has.models.add_relu import Add as AddReLU
from keras_has.models.fused_batch_norm import BatchNormalization as FusedBatchNormalization
from keras_has.models.pointwise_conv import Conv2D as PointwiseConv2D
from keras_has.models.standard import standard_layers_model, standardize_config

from tests.helpers import subprocess_env


def speed_model():
    """A nested backbone with all three speed layers (an Add(relu) before the identity
    Activation that fusion leaves) under a GAP + Dense head."""
    x = keras.Input((6, 6, 3))
    a = FusedBatchNormalization(name="bn")(PointwiseConv2D(4, 1, name="pw")(x))
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    y = keras.layers.Activation("linear", name="relu_out")(AddReLU(relu=True, name="add")([a, b]))
    backbone = keras.Model(x, y, name="tiny_backbone")
    inputs = keras.Input((6, 6, 3))
    features = backbone(inputs)
    logits = keras.layers.Dense(2, name="classifier")(
        keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, [logits, features])
    bn = backbone.get_layer("bn")  # non-trivial statistics, so a lost weight would show
    bn.set_weights([np.full(4, 1.5), np.full(4, -0.2), np.arange(4.0), np.full(4, 2.0)])
    return model


def test_speed_layers_become_standard_and_the_function_is_kept():
    model = speed_model()
    standard = standard_layers_model(model)
    modules = {type(layer).__module__ for layer in standard._flatten_layers()}
    assert not any(m.startswith("keras_has") for m in modules), modules
    backbone = standard.get_layer("tiny_backbone")
    assert type(backbone.get_layer("add")) is keras.layers.Add
    assert backbone.get_layer("relu_out").get_config()["activation"] == "relu"
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 3)).astype("float32")
    for got, expected in zip(standard(x), model(x)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # negative sums exist, so the restored ReLU is what keeps the outputs equal
    assert float(np.min(backbone.get_layer("add")(
        [backbone.get_layer("bn")(backbone.get_layer("pw")(x)),
         backbone.get_layer("conv")(x)]))) < 0


def test_an_add_relu_without_its_identity_activation_is_kept():
    x = keras.Input((4, 4, 2))
    y = AddReLU(relu=True, name="add")([x, x])
    config = keras.Model(x, y).get_config()
    assert standardize_config(config) == 0
    assert config["layers"][-1]["registered_name"] == "keras_has>Add"


def test_the_saved_standard_model_loads_in_plain_keras(tmp_path):
    model = speed_model()
    path = tmp_path / "model.keras"
    standard_layers_model(model).save(path)
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model(x)[0])
    code = (
        "import sys, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"got = m(np.load({str(tmp_path / 'x.npy')!r}))[0]\n"
        f"np.testing.assert_allclose(got, np.load({str(tmp_path / 'expected.npy')!r}), "
        "rtol=1e-6, atol=1e-6)\n"
        "assert not [n for n in sys.modules if n.startswith('keras_has')]\n"
        "print('plain keras ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), cwd=tmp_path, timeout=300)
    assert out.returncode == 0 and "plain keras ok" in out.stdout, out.stderr[-3000:]
