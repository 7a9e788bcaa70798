"""Fine-tuning: the classifier-ratio rate on exactly the new layers, head-only warm-up,
BatchNorm freezing, the linear probe, bad input failing before anything is written, and
a pretrained-style round trip (training -> export / evaluation reproduce the
preprocessing). No network and no ../shared needed: "pretrained" weights are random
weights saved as a file by the test."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has.train import optimizer as optimizer_lib
from keras_has import data, models
from keras_has.localize import evaluation
from keras_has.serve import evaluate as serve_evaluate
from keras_has.serve import export
from keras_has.train import run_folder
from keras_has.serve import signatures as serving
from keras_has.train import trainer as training
from keras_has.config import DataConfig, HidingConfig, OptimConfig, TrainConfig
from keras_has.data.preprocessing import make_preprocessing

from tests.helpers import subprocess_env


def _tiny_backbone_model():
    """`images [B, 4, 4, 2]` -> conv (inside `tiny_backbone`) -> GAP -> `classifier`."""
    inputs = keras.Input((4, 4, 2))
    inner = keras.Input((4, 4, 2))
    conv = keras.layers.Conv2D(3, 1, name="conv", kernel_initializer="ones")(inner)
    backbone = keras.Model(inner, conv, name="tiny_backbone")
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    logits = keras.layers.Dense(2, name="classifier", kernel_initializer="ones")(x)
    return keras.Model(inputs, logits)


def _one_step(model, optimizer):
    before = [v.numpy().copy() for v in model.trainable_variables]
    grads = [np.ones(v.shape, np.float32) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    return {v.path: v.numpy() - b for v, b in zip(model.trainable_variables, before)}


# ------------------------------------------------------------ classifier ratio
def test_head_variables_are_exactly_the_layers_outside_the_backbone():
    model = _tiny_backbone_model()
    assert optimizer_lib.head_variable_paths(model) == ("classifier/kernel", "classifier/bias")
    assert optimizer_lib.head_variable_paths(models.get_model("tiny_gap", 2)) == ()


def test_ratio_applies_to_exactly_the_new_layers():
    model = _tiny_backbone_model()
    optimizer = optimizer_lib.L2SGD(learning_rate=0.1, momentum=0.0,
                               head_paths=optimizer_lib.head_variable_paths(model),
                               head_lr_ratio=10.0)
    delta = _one_step(model, optimizer)
    # Plain SGD, gradient 1: the backbone moves by -lr, the new layers by -10 lr.
    np.testing.assert_allclose(delta["conv/kernel"], -0.1, rtol=1e-6)
    np.testing.assert_allclose(delta["conv/bias"], -0.1, rtol=1e-6)
    np.testing.assert_allclose(delta["classifier/kernel"], -1.0, rtol=1e-6)
    np.testing.assert_allclose(delta["classifier/bias"], -1.0, rtol=1e-6)


def test_warmup_freezes_the_backbone_only_and_schedule_sets_it():
    model = _tiny_backbone_model()
    optimizer = optimizer_lib.L2SGD(learning_rate=0.1, momentum=0.9, l2=0.5,
                               head_paths=optimizer_lib.head_variable_paths(model),
                               head_lr_ratio=2.0)
    optim = OptimConfig(lr_values=(0.1,), lr_boundaries=(), warmup_epochs=1, weight_decay=0.5,
                        weight_decay_until_epoch=None)
    schedule = optimizer_lib.EpochSchedule(optim, epochs=3)
    model.compile(optimizer=optimizer, loss="mse")
    schedule.set_model(model)
    schedule.on_epoch_begin(0)
    assert float(optimizer.backbone_lr_scale.numpy()) == 0.0
    delta = _one_step(model, optimizer)
    assert np.all(delta["conv/kernel"] == 0) and np.all(delta["conv/bias"] == 0)
    # Head: (g + l2 * w) * 2 lr with w = 1 (kernel, decayed) and the bias not decayed.
    np.testing.assert_allclose(delta["classifier/kernel"], -(1 + 0.5) * 0.2, rtol=1e-6)
    np.testing.assert_allclose(delta["classifier/bias"], -0.2, rtol=1e-6)
    schedule.on_epoch_begin(1)
    assert float(optimizer.backbone_lr_scale.numpy()) == 1.0
    delta = _one_step(model, optimizer)
    assert np.all(delta["conv/bias"] < 0)
    logs = {}
    schedule.on_epoch_end(0, logs)
    assert logs["backbone_lr_scale"] == 0.0


def test_rate_change_takes_effect_at_once_pytorch_form():
    """After a learning-rate step the update is PyTorch's (`v = 0.9 v + g`, `w -= lr v`),
    with the head multiplier and the warm-up scale applied outside the buffer: computed
    by hand for a two-variable model (backbone conv, head classifier; gradients all 1)."""
    model = _tiny_backbone_model()
    optimizer = optimizer_lib.L2SGD(learning_rate=0.1, momentum=0.9,
                               head_paths=optimizer_lib.head_variable_paths(model),
                               head_lr_ratio=10.0)
    optim = OptimConfig(lr_values=(0.1, 0.01), lr_boundaries=(2,), warmup_epochs=1,
                        schedule_reference_epochs=None, weight_decay=0.0,
                        weight_decay_until_epoch=None)
    schedule = optimizer_lib.EpochSchedule(optim, epochs=3)
    model.compile(optimizer=optimizer, loss="mse")
    schedule.set_model(model)
    # epoch 0 (warm-up, lr 0.1): the backbone is frozen (its buffer stays 0, no move);
    #   head v = 1, moves 1.0 (rate 0.1 x 10)
    # epoch 1 (lr 0.1): backbone v = 1, moves 0.1; head v = 1.9, moves 1.9
    # epoch 2 (lr 0.01): backbone v = 1.9, moves 0.019; head v = 2.71, moves 0.271.
    # (Keras' own SGD would move the backbone by 0.9 * 0.1 + 0.01 = 0.1 here, 5.3x more.)
    for epoch, (backbone, head) in enumerate([(0.0, 1.0), (0.1, 1.9), (0.019, 0.271)]):
        schedule.on_epoch_begin(epoch)
        delta = _one_step(model, optimizer)
        for path in ("conv/kernel", "conv/bias"):
            np.testing.assert_allclose(delta[path], -backbone, rtol=1e-5, atol=1e-7)
        for path in ("classifier/kernel", "classifier/bias"):
            np.testing.assert_allclose(delta[path], -head, rtol=1e-5)


def test_nesterov_rate_change_pytorch_form():
    """Nesterov: `v = 0.9 v + g`, `w -= lr (g + 0.9 v)`; one variable, rate 0.1 then 0.01."""
    w = keras.Variable(np.ones((1, 1), "float32"))
    optimizer = optimizer_lib.L2SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    g = np.ones((1, 1), "float32")
    optimizer.apply([g], [w])           # v = 1, w = 1 - 0.1 (1 + 0.9) = 0.81
    np.testing.assert_allclose(w.numpy(), [[0.81]], rtol=1e-6)
    optimizer.learning_rate = 0.01
    optimizer.apply([g], [w])           # v = 1.9, w = 0.81 - 0.01 (1 + 1.71) = 0.7829
    np.testing.assert_allclose(w.numpy(), [[0.7829]], rtol=1e-6)


def test_optimizer_serialises_its_groups():
    opt = optimizer_lib.L2SGD(learning_rate=0.1, head_paths=("classifier/kernel",), head_lr_ratio=5.0)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert clone.head_paths == ("classifier/kernel",) and clone.head_lr_ratio == 5.0


@pytest.mark.parametrize("ratio", [0, -1.0, float("nan")])
def test_bad_ratio_is_rejected_naming_the_flag(ratio):
    with pytest.raises(ValueError, match="lr_classifier_ratio"):
        OptimConfig(lr_classifier_ratio=ratio)
    with pytest.raises(ValueError, match="lr_classifier_ratio"):
        optimizer_lib.L2SGD(head_lr_ratio=ratio)


def test_bad_preprocessing_and_warmup_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="preprocessing: expected one of"):
        TrainConfig(model="tiny_gap", output_dir=str(tmp_path / "r"), preprocessing="imagenet")
    with pytest.raises(ValueError, match="warmup_epochs"):
        OptimConfig(warmup_epochs=-1)
    with pytest.raises(ValueError, match="model_arg weights"):
        TrainConfig(model="mobilenetv2_gap", output_dir=str(tmp_path / "r"),
                    model_kwargs={"weights": str(tmp_path / "missing.h5")})
    assert not (tmp_path / "r").exists()


def test_grid_sizes_relative_to_the_crop():
    hiding = HidingConfig(grid_sizes=(0, 16, 32, 44, 56), reference_size=224)
    assert hiding.scaled_grid_sizes(160) == (0, 11, 23, 31, 40)
    assert hiding.scaled_grid_sizes(224) == (0, 16, 32, 44, 56)
    assert hiding.as_pipeline_arg(112)["grid_sizes"] == (0, 8, 16, 22, 28)
    assert HidingConfig(grid_sizes=(16,)).scaled_grid_sizes(160) == (16,)


def test_freeze_batchnorm_freezes_the_backbone_norms():
    model = models.get_model("mobilenetv2_gap", 2, input_shape=(32, 32, 3), seed=0)
    count = optimizer_lib.freeze_backbone_batchnorm(model)
    backbone = model.get_layer("mobilenetv2_backbone")
    norms = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert count == len(norms) > 0
    assert not any(l.trainable for l in norms)
    assert "classifier/kernel" in [v.path for v in model.trainable_variables]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    # Frozen BN runs in inference mode even when called with training=True.
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), atol=1e-5)


# -------------------------------------------------------------- linear probe
def test_linear_probe_learns_separable_features():
    from keras_has.experiments import probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    kernel, bias = probe.fit_logistic_regression(x, y, 2, l2=1e-3)
    assert np.mean(np.argmax(x @ kernel + bias, 1) == y) > 0.95


# ------------------------------------------------ pretrained-style round trip
@pytest.fixture(scope="module")
def folder(tiny_wsol_folder):
    return tiny_wsol_folder


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """Random MobileNetV2 (include_top=False) weights saved as a file: a stand-in for
    the ImageNet weights file, no download."""
    path = str(tmp_path_factory.mktemp("weights") / "mobilenetv2_random.weights.h5")
    base = keras.applications.MobileNetV2(include_top=False, weights=None,
                                          input_shape=(224, 224, 3))
    base.save_weights(path)
    return path


def _config(folder, out, weights, **kw):
    return TrainConfig(
        model="mobilenetv2_gap", output_dir=out, epochs=1, steps_per_epoch=1,
        data=DataConfig(source=folder, image_size=32, batch_size=4, eval_split="test"),
        hiding=HidingConfig(grid_sizes=(8,), hide_prob=0.5),
        optim=OptimConfig(lr_values=(0.01,), lr_boundaries=(), warmup_epochs=1),
        strategy="one_device", eval_every=0, best_metric="", verbose=0,
        model_kwargs={"weights": weights}, **kw)


def test_weights_file_that_does_not_fit_fails_before_anything_is_written(folder, weights_file,
                                                                          tmp_path):
    out = tmp_path / "run"
    cfg = _config(folder, str(out), weights_file)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "model": "vgg16_gap"})
    with pytest.raises(ValueError, match="mobilenetv2_random.weights.h5 does not fit"):
        training.train(cfg)
    assert not out.exists()


def test_missing_imagenet_cache_without_network_names_the_file(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    monkeypatch.setattr(file_utils.config, "keras_home", lambda: str(tmp_path / "keras_home"))
    expected = os.path.join(str(tmp_path / "keras_home"), "models",
                            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    with pytest.raises(FileNotFoundError, match="cache file " + expected.replace(".", r"\.")):
        models.get_model("mobilenetv2_gap", 2, input_shape=(32, 32, 3), weights="imagenet")


def test_training_export_and_evaluation_share_the_preprocessing(folder, weights_file, tmp_path):
    run = tmp_path / "run"
    result = training.train(_config(folder, str(run), weights_file))
    # Pretrained weights -> keras.applications' MobileNetV2 preprocessing, recorded.
    assert result.preprocessing == make_preprocessing("tf")
    recorded = json.loads((run / "preprocessing.json").read_text())
    assert recorded["mode"] == "tf" and recorded["channel_order"] == "rgb"
    mean = recorded["dataset_mean"]
    np.testing.assert_allclose(recorded["hiding_fill_value"], [m / 127.5 - 1 for m in mean],
                               rtol=1e-5)
    # The pretrained weights were loaded into the backbone.
    saved = keras.applications.MobileNetV2(include_top=False, weights=None,
                                           input_shape=(224, 224, 3))
    saved.load_weights(weights_file)
    assert result.model.get_layer("mobilenetv2_backbone").get_layer("Conv1").kernel.shape == \
        saved.get_layer("Conv1").kernel.shape
    # The fine-tuned model.keras (fused batch norms in training) loads in plain Keras.
    code = ("import sys, keras\n"
            f"m = keras.saving.load_model({str(run / 'model.keras')!r})\n"
            "assert not [n for n in sys.modules if n.startswith('keras_has')]\n"
            "print(sorted({type(l).__module__.split('.')[0] for l in m._flatten_layers()}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(), timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "['keras']", out.stderr[-3000:]
    # The evaluation side reads the run's preprocessing for the .keras file ...
    model, settings = serve_evaluate.load_for_evaluation(str(run / "model.keras"))
    assert settings["preprocessing"] == make_preprocessing("tf")
    # ... and the export records and applies it.
    resolved = run_folder.read_run_settings(model_path=str(run / "model.keras"))
    assert resolved["preprocessing"] == make_preprocessing("tf")
    out = export.export_saved_model(model, tmp_path / "export", image_size=32,
                                    preprocessing=resolved["preprocessing"])
    prep_json = serving.read_export_settings(out)
    assert prep_json["preprocessing"]["mode"] == "tf"
    source, exp_settings = serve_evaluate.load_for_evaluation(str(out))
    assert exp_settings["preprocessing"] == make_preprocessing("tf")
    pixels = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    loaded = tf.saved_model.load(str(out))
    served = loaded.signatures["serving_images"](images=tf.constant(pixels))
    expected = model(pixels.astype("float32") / 127.5 - 1.0, training=False)
    np.testing.assert_allclose(served["scores"].numpy()[:, 0],
                               np.max(tf.nn.softmax(expected).numpy(), axis=1), atol=1e-5)
    # Evaluating the export and the .keras model on the same data gives the same metrics.
    eval_ds = data.make_eval_dataset(folder, 32, 4, preprocessing=exp_settings["preprocessing"])
    keras_metrics = evaluation.evaluate_localization(model, eval_ds, verbose=0)
    export_metrics = evaluation.evaluate_localization(source, eval_ds, verbose=0)
    assert keras_metrics["top1_cls"] == export_metrics["top1_cls"]
    assert keras_metrics["gt_known_loc"] == export_metrics["gt_known_loc"]


def test_export_reverses_channels_for_caffe_preprocessing(tmp_path):
    model = models.get_model("tiny_gap", 3, input_shape=(16, 16, 3), widths=(4, 8), seed=0)
    prep = make_preprocessing("caffe")
    out = export.export_saved_model(model, tmp_path / "e", image_size=16, preprocessing=prep,
                                    cam_signature=False)
    assert serving.read_export_settings(out)["channel_order"] == "bgr"
    pixels = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3)).astype("uint8")
    served = tf.saved_model.load(str(out)).signatures["serving_images"](images=tf.constant(pixels))
    bgr = pixels[..., ::-1].astype("float32") - np.array([103.939, 116.779, 123.68], "float32")
    probs = tf.nn.softmax(model(bgr, training=False)).numpy()
    np.testing.assert_allclose(served["scores"].numpy()[:, 0], probs.max(axis=1), atol=1e-5)
    assert np.array_equal(served["classes"].numpy()[:, 0], probs.argmax(axis=1))
