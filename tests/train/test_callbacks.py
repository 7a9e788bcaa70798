"""LocalizationCallback inside a 1-epoch fit (of a model and of a TrainingModel),
TensorBoard on a TrainingModel, and evaluate_localization on a tiny model."""
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_has import methods
from keras_has.train.callbacks import LocalizationCallback, TensorBoard
from keras_has.localize.evaluation import evaluate_localization, run_localization


def _tiny_model(num_classes=3, size=16):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="cam_features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs)


def _eval_dataset(n=6, size=16, batch=3, masks=False):
    rng = np.random.default_rng(0)
    boxes = -np.ones((n, 2, 4), np.float32)
    boxes[:, 0] = (2, 3, 10, 12)
    boxes[::2, 1] = (0, 0, 5, 5)
    data = {"image": rng.normal(size=(n, size, size, 3)).astype(np.float32),
            "label": (np.arange(n) % 3).astype(np.int32),
            "boxes": boxes,
            "num_boxes": np.where(np.arange(n) % 2 == 0, 2, 1).astype(np.int32),
            "image_id": np.array([f"im{i}" for i in range(n)]),
            "original_size": np.full((n, 2), size, np.int32)}
    if masks:
        m = np.zeros((n, size, size), np.float32)
        m[:, 3:13, 2:11] = 1
        data["mask"] = m
        data["ignore"] = np.zeros((n, size, size), bool)
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


def test_evaluate_localization_returns_metrics():
    model = _tiny_model()
    m = evaluate_localization(model, _eval_dataset(masks=True), cam_curve_interval=0.05,
                              verbose=0)
    assert m["num_images"] == 6
    for k in ("top1_cls", "top5_cls", "gt_known_loc", "top1_loc", "max_box_acc",
              "max_box_acc_v2", "pxap"):
        assert 0.0 <= m[k] <= 100.0
    assert m["top5_cls"] == 100.0  # 3 classes: the label is always in the top 5
    res = run_localization(model, _eval_dataset(), num_examples=4, verbose=0)
    assert res.examples["cam"].shape == (4, 16, 16)
    assert res.examples["pred_box"].shape == (4, 4)


def test_evaluate_rejects_non_dict_batches():
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 16, 16, 3), np.float32),
                                             np.zeros(2, np.int32))).batch(2)
    with pytest.raises(TypeError, match="dict"):
        evaluate_localization(_tiny_model(), ds, verbose=0)


def test_callback_in_fit_writes_logs_json_and_events(tmp_path):
    model = _tiny_model()
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(1).normal(size=(6, 16, 16, 3)).astype(np.float32)
    y = np.arange(6) % 3
    cb = LocalizationCallback(_eval_dataset(), every_n_epochs=1, log_dir=str(tmp_path),
                              cam_curve_interval=0.05, verbose=0, num_images=4)
    csv = tmp_path / "log.csv"
    hist = model.fit(x, y, batch_size=3, epochs=2, verbose=0,
                     callbacks=[cb, keras.callbacks.CSVLogger(str(csv))])
    for k in ("val_loc_top1_loc", "val_loc_gt_known_loc", "val_loc_max_box_acc_v2"):
        assert k in hist.history and len(hist.history[k]) == 2
    assert "val_loc_top1_loc" in csv.read_text().splitlines()[0]
    files = sorted(glob.glob(os.path.join(tmp_path, "localization", "metrics_epoch*.json")))
    assert [os.path.basename(f) for f in files] == ["metrics_epoch0001.json",
                                                    "metrics_epoch0002.json"]
    saved = json.loads(open(files[-1]).read())
    assert saved["top1_loc"] == pytest.approx(hist.history["val_loc_top1_loc"][-1])
    tags, images = set(), 0
    for ev in glob.glob(os.path.join(tmp_path, "localization", "events.out.tfevents.*")):
        for e in tf.compat.v1.train.summary_iterator(ev):
            for v in e.summary.value:
                tags.add(v.tag)
                if v.tag == "localization/cam_overlays":
                    images += 1
    assert {"localization/top1_loc", "localization/max_box_acc_v2"} <= tags
    assert images == 2


def test_callback_every_n_epochs_keeps_keys_consistent():
    model = _tiny_model()
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = LocalizationCallback(_eval_dataset(), every_n_epochs=2, verbose=0)
    hist = model.fit(np.zeros((3, 16, 16, 3), np.float32), np.zeros(3), epochs=5, verbose=0,
                     callbacks=[cb])
    values = hist.history["val_loc_top1_loc"]
    # measured at epochs 2, 4 and the last (5); the epochs between log NaN, not the
    # previous figures
    assert [not np.isnan(v) for v in values] == [False, True, False, True, True]
    assert [m["epoch"] for m in cb.history] == [2, 4, 5]
    with pytest.raises(ValueError, match="every_n_epochs"):
        LocalizationCallback(_eval_dataset(), every_n_epochs=0)


def test_callback_evaluates_every_n_and_after_the_last_epoch_with_pxap_column(tmp_path):
    model = _tiny_model()
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = LocalizationCallback(_eval_dataset(masks=True), every_n_epochs=2, verbose=0,
                              cam_curve_interval=0.05)
    csv = tmp_path / "log.csv"
    hist = model.fit(np.zeros((3, 16, 16, 3), np.float32), np.zeros(3), epochs=3, verbose=0,
                     callbacks=[cb, keras.callbacks.CSVLogger(str(csv))])
    assert [m["epoch"] for m in cb.history] == [2, 3]  # epoch 2 (every 2) and the last
    values = hist.history["val_loc_pxap"]
    assert np.isnan(values[0]) and not np.isnan(values[1]) and not np.isnan(values[2])
    assert "val_loc_pxap" in csv.read_text().splitlines()[0].split(",")


def test_epoch_line_prints_one_line_with_the_logged_figures_only():
    import io

    from keras_has.train.callbacks import EpochLine

    out = io.StringIO()
    cb = EpochLine(10, stream=out, prefix="")
    line = cb.format_line(2, {"loss": 0.51234, "accuracy": 0.87123, "val_loss": float("nan"),
                              "val_loc_gt_known_loc": 41.5, "learning_rate": 0.001}, 21.44)
    assert line == ("epoch  3/10  loss 0.5123  accuracy 0.8712  val_gt_known_loc 41.50  "
                    "learning_rate 0.001  21.4 s")
    cb.on_epoch_begin(0)
    cb.on_epoch_end(0, {"loss": 1.0})
    printed = out.getvalue().splitlines()
    assert len(printed) == 1 and printed[0].startswith("epoch  1/10  loss 1  ")


def test_callbacks_of_a_training_model_look_at_its_inference_model(tmp_path):
    model = _tiny_model()
    training = methods.TrainingModel(model, methods.get_method("cam"))
    training.compile(optimizer="sgd")
    board = TensorBoard(str(tmp_path / "tb"))
    board.set_model(training)
    assert board.model is model
    board.on_train_begin()
    board.on_train_end()
    summaries = {}
    for path in glob.glob(str(tmp_path / "tb" / "train" / "events*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            summaries.update({v.tag: v for v in event.summary.value})
    config = tf.make_ndarray(summaries["keras"].tensor).item().decode()
    assert json.loads(config)["config"]["name"] == model.name  # the model's own config

    # The localization callback evaluates the inference model's CAMs while the
    # training model is fitted (the training model has no `cam_features` layer).
    images = np.random.default_rng(1).normal(size=(6, 16, 16, 3)).astype(np.float32)
    callback = LocalizationCallback(_eval_dataset(), verbose=0)
    history = training.fit(images, np.arange(6) % 3, batch_size=3, epochs=1, verbose=0,
                           callbacks=[callback])
    assert callback.last_metrics["num_images"] == 6
    assert np.isfinite(history.history["val_loc_top1_cls"][0])
