"""Evaluating an exported SavedModel: the `cam_features` signature, SavedModelCamSource."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has.localize import evaluation
from keras_has.serve import evaluate as serve_evaluate
from keras_has.serve import export
from keras_has.serve import signatures as serving
from keras_has.models import get_model

SIZE = 32
NUM_CLASSES = 3
MEAN = (120.0, 110.0, 100.0)
STD = (60.0, 55.0, 50.0)
from tests.helpers import REPO_ROOT  # noqa: E402

REPO = str(REPO_ROOT)


@pytest.fixture(scope="module")
def model():
    return get_model("tiny_gap", num_classes=NUM_CLASSES, input_shape=(SIZE, SIZE, 3),
                     widths=(8, 16), seed=1)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "localizer"
    export.export_saved_model(model, path, image_size=SIZE, mean=MEAN, std=STD,
                              cam_signature=True)
    return path


def eval_batches(seed=0, batches=2, batch=3):
    """Dict batches as make_eval_dataset yields them: random blobs, 1 or 2 boxes each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        boxes = np.full((batch, 2, 4), -1, np.float32)
        num = rng.integers(1, 3, batch).astype(np.int32)
        for i in range(batch):
            for j in range(num[i]):
                x0, y0 = rng.integers(0, SIZE // 2, 2)
                w, h = rng.integers(4, SIZE // 2, 2)
                boxes[i, j] = (x0, y0, x0 + w, y0 + h)
        out.append({"image": rng.normal(size=(batch, SIZE, SIZE, 3)).astype(np.float32),
                    "label": rng.integers(0, NUM_CLASSES, batch).astype(np.int32),
                    "boxes": boxes, "num_boxes": num})
    return out


def test_cam_features_signature_gives_every_class_cam(model, export_dir):
    loaded = tf.saved_model.load(str(export_dir))
    assert {"serving_default", "serving_images", "cam_features"} <= set(loaded.signatures)
    images = eval_batches()[0]["image"]
    out = loaded.signatures["cam_features"](images=tf.constant(images))
    assert set(out) == set(serving.CAM_FEATURES_KEYS)
    np.testing.assert_allclose(out["logits"].numpy(), model(images, training=False),
                               rtol=1e-5, atol=1e-5)
    cams = out["class_cams"].numpy()
    assert cams.shape == (3, SIZE // 2, SIZE // 2, NUM_CLASSES)
    # Reference: the feature layer's output times the classifier kernel, in numpy.
    features = keras.Model(model.inputs, model.get_layer("cam_features").output)(images)
    kernel = model.get_layer("classifier").kernel.numpy()
    expected = np.einsum("bhwc,ck->bhwk", np.asarray(features, np.float64), kernel)
    np.testing.assert_allclose(cams, expected, rtol=1e-4, atol=1e-5)


def test_export_without_cam_signature_is_refused_with_the_fix(model, tmp_path):
    path = tmp_path / "plain"
    export.export_saved_model(model, path, image_size=SIZE, mean=MEAN, std=STD,
                              cam_signature=False)
    assert set(tf.saved_model.load(str(path)).signatures) == {"serving_default",
                                                              "serving_images"}
    with pytest.raises(ValueError, match="cam_signature=True"):
        serve_evaluate.SavedModelCamSource(path)
    with pytest.raises(ValueError, match="no saved_model.pb"):
        serve_evaluate.SavedModelCamSource(tmp_path)


def test_source_checks_labels_and_image_size(export_dir):
    source = serve_evaluate.SavedModelCamSource(export_dir)
    assert source.image_size == (SIZE, SIZE) and source.num_classes == NUM_CLASSES
    images = np.zeros((2, SIZE, SIZE, 3), np.float32)
    with pytest.raises(ValueError, match=r"labels: expected values in \[0, 3\), received \[3\]"):
        source.forward(images, np.array([0, 3]))
    with pytest.raises(ValueError, match="images: expected"):
        source.forward(np.zeros((2, 16, 16, 3), np.float32), np.array([0, 1]))


def test_saved_model_metrics_equal_keras_model_metrics(model, export_dir):
    kwargs = dict(cam_threshold=0.3, cam_curve_interval=0.05, verbose=0, num_examples=4)
    by_keras = evaluation.run_localization(model, eval_batches(), **kwargs)
    by_export = evaluation.run_localization(serve_evaluate.SavedModelCamSource(export_dir),
                                            eval_batches(), **kwargs)
    assert by_keras.metrics.keys() == by_export.metrics.keys()
    for key, value in by_keras.metrics.items():
        np.testing.assert_allclose(by_export.metrics[key], value, atol=1e-6, err_msg=key)
    # Not a degenerate comparison: the GT-class CAMs are real maps, not all equal.
    cams = by_export.examples["cam"]
    np.testing.assert_allclose(cams, by_keras.examples["cam"], atol=1e-4)
    assert cams.shape == (4, SIZE, SIZE) and cams.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(by_export.examples["pred_box"],
                                  by_keras.examples["pred_box"])


def test_run_localization_rejects_other_objects():
    with pytest.raises(TypeError, match="forward"):
        evaluation.run_localization(object(), eval_batches(), verbose=0)


def test_evaluate_script_on_saved_model_writes_metrics(export_dir, tmp_path, monkeypatch):
    model, settings = serve_evaluate.load_for_evaluation(export_dir)
    assert isinstance(model, serve_evaluate.SavedModelCamSource)
    prep = settings.pop("preprocessing")
    assert settings == {"image_size": SIZE, "mean": MEAN, "std": STD}
    assert (prep.mode, prep.mean, prep.std, prep.channel_order) == ("dataset", MEAN, STD, "rgb")
    with pytest.raises(ValueError, match="takes 32 px images, received 64"):
        serve_evaluate.load_for_evaluation(export_dir, image_size=64)

    # evaluate_model_file: load_for_evaluation -> make_eval_dataset -> run -> write.
    seen = {}

    def fake_eval_dataset(source, image_size, batch_size, split, preprocessing):
        seen.update(image_size=image_size, mean=preprocessing.mean, std=preprocessing.std)
        return eval_batches(seed=2)

    from keras_has import data
    monkeypatch.setattr(data, "get_source", lambda name: name)
    monkeypatch.setattr(data, "make_eval_dataset", fake_eval_dataset)
    out_dir = tmp_path / "eval"
    result, prep, written = serve_evaluate.evaluate_model_file(
        export_dir, "synthetic", output_dir=out_dir, num_examples=2, cam_curve_interval=0.05,
        verbose=0)
    assert seen == {"image_size": SIZE, "mean": MEAN, "std": STD}  # from the export
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics == result.metrics and written == [str(out_dir / "metrics.json"),
                                                     str(out_dir / "gallery.png")]
    expected = evaluation.run_localization(model, eval_batches(seed=2), verbose=0,
                                           cam_curve_interval=0.05).metrics
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    assert (out_dir / "gallery.png").stat().st_size > 0
    # Bad arguments are refused before the model is loaded or anything is written.
    for kwargs, message in ((dict(box_rule="loose"), "box_rule"),
                            (dict(cam_curve_interval=0.0), "cam_curve_interval"),
                            (dict(preprocessing_mode="yuv"), "preprocessing: expected"),
                            (dict(batch_size=0), "batch_size"),
                            (dict(mean=(1, 2, 3)), "mean/std: expected both")):
        with pytest.raises(ValueError, match=message):
            serve_evaluate.evaluate_model_file(tmp_path / "missing.keras", "synthetic",
                                           output_dir=tmp_path / "never", **kwargs)
    assert not (tmp_path / "never").exists()
