"""Loading .keras files: what keras-has saves opens with keras.saving.load_model after
`import keras_has` (either import order), and a file that is not a model archive is
named as such."""
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from keras_has.models.caffe_layers import LocalResponseNormalization
from keras_has.serve.loading import load_keras_model, model_image_size
from keras_has.train.optimizer import L2SGD

from tests.helpers import subprocess_env


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A compiled model with a keras-has layer and the keras-has optimizer, saved."""
    folder = tmp_path_factory.mktemp("saved")
    inputs = keras.Input((8, 8, 3))
    x = LocalResponseNormalization(name="lrn")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    outputs = keras.layers.Dense(2, name="classifier")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=L2SGD(learning_rate=0.1, momentum=0.9, l2=1e-4), loss="mse")
    path = folder / "model.keras"
    model.save(path)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", model(x))
    return folder


@pytest.mark.parametrize("imports", ["import keras_has\nimport keras",
                                     "import keras\nimport keras_has"])
def test_keras_load_model_after_import_keras_has(saved, imports):
    code = (f"{imports}\nimport numpy as np\n"
            f"m = keras.saving.load_model({str(saved / 'model.keras')!r})\n"
            "assert type(m.optimizer).__name__ == 'L2SGD', m.optimizer\n"
            f"np.testing.assert_allclose(m(np.load({str(saved / 'x.npy')!r})), "
            f"np.load({str(saved / 'y.npy')!r}), rtol=1e-6)\n"
            "print('loaded')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), timeout=300)
    assert out.returncode == 0 and "loaded" in out.stdout, out.stderr[-3000:]


def test_a_file_that_is_not_a_model_archive_is_named(tmp_path, saved):
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"expected a Keras model archive .*notes\.keras.*not a "
                                         r"zip archive \(it starts with b'hello'"):
        load_keras_model(text)
    data = (saved / "model.keras").read_bytes()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(ValueError, match=r"cut\.keras.*(damaged|not a zip archive)"):
        load_keras_model(cut)
    other = tmp_path / "other.keras"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "not a model")
    with pytest.raises(ValueError, match=r"other\.keras.*without config\.json"):
        load_keras_model(other)
    with pytest.raises(FileNotFoundError, match=r"model_path: .*missing\.keras"):
        load_keras_model(tmp_path / "missing.keras")


def test_model_image_size_is_the_fixed_square_input():
    assert model_image_size(keras.Sequential([keras.Input((24, 24, 3)),
                                              keras.layers.Conv2D(2, 1)])) == 24
    assert model_image_size(keras.Sequential([keras.Input((None, None, 3)),
                                              keras.layers.Conv2D(2, 1)])) is None
    assert model_image_size(keras.Sequential([keras.Input((24, 32, 3)),
                                              keras.layers.Conv2D(2, 1)])) is None
