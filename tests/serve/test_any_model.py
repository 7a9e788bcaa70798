"""Evaluate, predict and export for a Keras classifier keras-has did not build: a nested
backbone with default layer names, a softmax output, its own input scaling."""
import json
import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has.localize import cams as cam_lib
from keras_has.serve import evaluate as serve_evaluate
from keras_has.serve import export
from keras_has.serve import predict as predict_lib
from keras_has.serve import signatures as serving
from tests.helpers import make_wsol_folder

SIZE = 32


def _own_model(head="gap"):
    """`x = base(x)` around a nested functional backbone, Rescaling inside, softmax out."""
    base_in = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(base_in)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    base = keras.Model(base_in, x, name="backbone")
    inputs = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.Rescaling(1.0 / 255)(inputs)
    y = base(y)
    if head == "gap":
        y = keras.layers.GlobalAveragePooling2D()(y)
    else:
        y = keras.layers.Flatten()(y)
    outputs = keras.layers.Dense(2, activation="softmax")(y)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    path = str(root / "own.keras")
    _own_model().save(path)
    folder = make_wsol_folder(str(root / "data"), n_train=4, n_test=6, size=SIZE)
    return path, folder, root


def test_evaluate_any_model_with_each_method_and_normalization(saved):
    path, folder, _ = saved
    model = keras.saving.load_model(path)
    results = {}
    for method in ("cam", "gradcam", "scorecam"):
        for norm in ("minmax", "ivr"):
            result, prep, _ = serve_evaluate.evaluate_model_file(
                path, folder, preprocessing_mode="none", cam_method=method,
                cam_normalization=norm, verbose=0, num_examples=0)
            results[method, norm] = result.metrics
    assert prep.mode == "none"
    # Top-1 Clas is the model's own classification, whatever the CAM method.
    images = np.stack([cv2.imread(os.path.join(folder, "images", f"test/{i % 2}/{i}.png"))
                       [..., ::-1] for i in range(6)]).astype("float32")
    labels = np.array([i % 2 for i in range(6)])
    top1 = 100.0 * np.mean(np.argmax(model.predict(images, verbose=0), 1) == labels)
    assert {round(m["top1_cls"], 6) for m in results.values()} == {round(top1, 6)}
    # On a GAP + Dense head Grad-CAM is ReLU(CAM) / (h w): with `max` normalisation (which
    # clips negatives) both give the same maps, hence the same metrics.
    cam_max, _, _ = serve_evaluate.evaluate_model_file(
        path, folder, preprocessing_mode="none", cam_method="cam", cam_normalization="max",
        verbose=0, num_examples=0)
    grad_max, _, _ = serve_evaluate.evaluate_model_file(
        path, folder, preprocessing_mode="none", cam_method="gradcam",
        cam_normalization="max", verbose=0, num_examples=0)
    assert cam_max.metrics == pytest.approx(grad_max.metrics)


def test_scores_are_the_models_own_probabilities(saved):
    path, _, root = saved
    model = keras.saving.load_model(path)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (3, SIZE, SIZE, 3)).astype(np.uint8)
    blobs = [cv2.imencode(".png", p[..., ::-1])[1].tobytes() for p in pixels]
    predictor = predict_lib.load_predictor(
        path, {"preprocessing_mode": "none", "class_names": ["a", "b"]}, top_k=2,
        fold_batch_norm=False, cam_method="gradcam")
    out = predictor(blobs)
    expected = model.predict(pixels.astype("float32"), verbose=0)  # softmax output
    np.testing.assert_allclose(out["scores"], -np.sort(-expected, axis=1), atol=1e-5)
    assert out["valid"].all()


def test_export_gradcam_serves_and_evaluates_like_the_keras_model(saved):
    path, folder, root = saved
    model = keras.saving.load_model(path)
    target = str(root / "export_gradcam")
    export.export_saved_model(model, target, image_size=SIZE, class_names=["a", "b"],
                              preprocessing=serving.make_preprocessing("none"),
                              cam_method="gradcam", cam_normalization="ivr")
    loaded = tf.saved_model.load(target)
    assert serving.CAMS_FOR_LABELS in loaded.signatures
    assert serving.CAM_FEATURES not in loaded.signatures  # every class's map: cam only
    with open(os.path.join(target, "assets", "preprocessing.json")) as f:
        recorded = json.load(f)
    assert (recorded["cam_method"], recorded["cam_normalization"]) == ("gradcam", "ivr")
    images = tf.random.stateless_uniform([2, SIZE, SIZE, 3], [1, 2], maxval=255.0)
    labels = tf.constant([1, 0], tf.int32)
    out = loaded.signatures[serving.CAMS_FOR_LABELS](images=images, labels=labels)
    cams, _ = cam_lib.compute_cams_and_logits(model, images, labels, method="gradcam")
    np.testing.assert_allclose(out["cams"].numpy(), cams.numpy(), rtol=1e-4, atol=1e-5)
    from_export, _, _ = serve_evaluate.evaluate_model_file(
        target, folder, verbose=0, num_examples=0)
    from_keras, _, _ = serve_evaluate.evaluate_model_file(
        path, folder, preprocessing_mode="none", cam_method="gradcam",
        cam_normalization="minmax", verbose=0, num_examples=0)
    assert from_export.metrics == pytest.approx(from_keras.metrics, abs=1e-6)


def test_bad_cam_settings_fail_in_one_line_before_writing(saved, tmp_path):
    path, folder, _ = saved
    flat = _own_model(head="flatten")
    target = tmp_path / "never"
    with pytest.raises(ValueError, match="'cam' needs global average pooling \\+ Dense.*"
                                         "gradcam"):
        export.export_saved_model(flat, target, image_size=SIZE,
                                  preprocessing=serving.make_preprocessing("none"))
    assert not target.exists()
    with pytest.raises(ValueError, match="no layer.*'nope'|'nope'"):
        serve_evaluate.evaluate_model_file(path, folder, preprocessing_mode="none",
                                           cam_method="gradcam", cam_layer="nope", verbose=0)
    with pytest.raises(ValueError, match="normalization: expected one of"):
        serve_evaluate.evaluate_model_file(path, folder, cam_normalization="mean", verbose=0)


def test_callback_scores_any_model_being_fitted(saved, tmp_path):
    from keras_has import data
    from keras_has.train.callbacks import LocalizationCallback

    _, folder, _ = saved
    model = _own_model(head="flatten")  # no GAP: only gradient methods apply
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    prep = serving.make_preprocessing("none")
    eval_ds = data.make_eval_dataset(folder, SIZE, 4, split="test", preprocessing=prep)
    train_ds = eval_ds.map(lambda d: (d["image"], d["label"]))
    callback = LocalizationCallback(eval_ds, log_dir=str(tmp_path / "tb"), verbose=0,
                                    preprocessing=prep, num_images=2, cam_method="layercam")
    model.fit(train_ds, epochs=1, verbose=0, callbacks=[callback])
    assert callback.last_metrics["num_images"] == 6
    assert os.listdir(tmp_path / "tb" / "localization")


def test_commands_on_a_model_keras_has_did_not_build(saved, tmp_path):
    """The README's commands: evaluate, export and predict with --preprocessing=none and
    --cam_method=gradcam, image size from the model's input, no run folder."""
    import subprocess
    import sys

    path, folder, _ = saved
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "keras_has.cli", *args],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    common = ["--preprocessing=none", "--cam_method=gradcam", "--cam_normalization=ivr"]
    shown = cli("evaluate", f"--model_path={path}", f"--source={folder}", *common,
                f"--output_dir={tmp_path / 'eval'}")
    assert "MaxBoxAccV2" in shown
    with open(tmp_path / "eval" / "metrics.json") as f:
        assert json.load(f)["num_images"] == 6
    cli("export", f"--model_path={path}", f"--output_dir={tmp_path / 'export'}", *common)
    with open(tmp_path / "export" / "assets" / "preprocessing.json") as f:
        assert json.load(f)["cam_method"] == "gradcam"
    image = os.path.join(folder, "images", "test", "0", "0.png")
    cli("predict", f"--model_path={tmp_path / 'export'}", f"--output_dir={tmp_path / 'p'}",
        image)
    cli("predict", f"--model_path={path}", f"--output_dir={tmp_path / 'q'}", *common, image)
    rows = [json.loads(line) for name in ("p", "q")
            for line in open(tmp_path / name / "predictions.jsonl")]
    assert rows[0]["score"] == pytest.approx(rows[1]["score"], abs=1e-5)
    assert rows[0]["box"] == rows[1]["box"]
    model = keras.saving.load_model(path)
    pixels = cv2.imread(image)[..., ::-1][None].astype("float32")
    assert rows[0]["score"] == pytest.approx(float(model.predict(pixels, verbose=0).max()),
                                             abs=1e-5)  # the model's softmax, not a second


def test_a_multi_output_model_needs_the_class_output_named(tmp_path):
    folder = make_wsol_folder(str(tmp_path / "d"), n_train=4, n_test=4, size=SIZE)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    scores = keras.layers.Dense(2, name="scores")(pooled)
    extra = keras.layers.Dense(1, name="quality")(pooled)
    path = str(tmp_path / "two.keras")
    keras.Model(inputs, [extra, scores]).save(path)
    with pytest.raises(ValueError, match="has 2 outputs.*'quality'.*'scores'"):
        serve_evaluate.evaluate_model_file(path, folder, preprocessing_mode="none", verbose=0)
    by_name, _, _ = serve_evaluate.evaluate_model_file(
        path, folder, preprocessing_mode="none", cam_output="scores", verbose=0,
        num_examples=0)
    by_index, _, _ = serve_evaluate.evaluate_model_file(
        path, folder, preprocessing_mode="none", cam_output=1, verbose=0, num_examples=0)
    assert by_name.metrics == by_index.metrics
    model = keras.saving.load_model(path)
    target = tmp_path / "export"
    export.export_saved_model(model, target, image_size=SIZE, cam_output="scores",
                              preprocessing=serving.make_preprocessing("none"))
    with open(target / "assets" / "preprocessing.json") as f:
        assert json.load(f)["cam_output"] == "scores"
