"""Tests for keras_has.serve.predict and the export / predict commands (functions in-process,
the commands in subprocesses)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_has.serve import export
from keras_has.serve import predict
from keras_has.models import get_model
from keras_has.localize.visualize import PRED_COLOR

from tests.helpers import REPO_ROOT  # noqa: E402

REPO = str(REPO_ROOT)
IMAGE_SIZE = 32
MEAN = (120.0, 110.0, 100.0)
STD = (60.0, 55.0, 50.0)
NAMES = ("cat", "dog", "bird")
THRESHOLD = 0.7  # boxes smaller than the images with this random tiny model


def smooth_image(seed, height, width):
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def model():
    return get_model("tiny_gap", num_classes=3, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                     widths=(8, 16), seed=0)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    keras_path = root / "run" / "model.keras"
    keras_path.parent.mkdir()
    model.save(keras_path)
    (keras_path.parent / "config.json").write_text(json.dumps({"data": {"image_size": IMAGE_SIZE}}))
    export_dir = export.export_saved_model(model, root / "export", image_size=IMAGE_SIZE,
                                           mean=MEAN, std=STD, class_names=NAMES, top_k=2,
                                           cam_threshold=THRESHOLD)
    return keras_path, export_dir


@pytest.fixture
def images(tmp_path):
    """A folder of good images (two sizes, nested) and bad ones."""
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    good = {
        folder / "a.jpg": smooth_image(1, 40, 60),
        folder / "nested" / "b.png": smooth_image(2, 25, 18),
        folder / "nested" / "a.png": smooth_image(3, 32, 32),  # same stem as a.jpg
    }
    for path, image in good.items():
        cv2.imwrite(str(path), image[:, :, ::-1])
    truncated = cv2.imencode(".jpg", smooth_image(4, 30, 30))[1].tobytes()
    bad = {
        folder / "corrupt.jpg": b"\xff\xd8\xff\xe0 this is not really a JPEG",
        folder / "empty.png": b"",
        folder / "text.png": b"hello",
        folder / "nested" / "truncated.jpg": truncated[:len(truncated) // 2],
    }
    for path, data in bad.items():
        path.write_bytes(data)
    (folder / "notes.txt").write_text("not an image extension: ignored")
    return folder, {str(p): im for p, im in good.items()}, sorted(str(p) for p in bad)


def test_expand_inputs(images, tmp_path):
    folder, good, bad = images
    files, unmatched = predict.expand_inputs(
        [str(folder), str(folder / "*.jpg"), str(tmp_path / "missing.jpg"),
         str(tmp_path / "none*.png")])
    assert sorted(files) == sorted(list(good) + bad)  # each file once, .txt ignored
    assert unmatched == [str(tmp_path / "missing.jpg"), str(tmp_path / "none*.png")]
    recursive, _ = predict.expand_inputs([str(folder / "**" / "*.png")])
    assert sorted(recursive) == sorted(p for p in list(good) + bad if p.endswith(".png"))


def test_predict_files_skips_bad_files_and_writes_records_and_overlays(saved, images, tmp_path):
    _, export_dir = saved
    folder, good, bad = images
    files, _ = predict.expand_inputs([str(folder)])
    files.append(str(tmp_path / "vanished.jpg"))  # listed, then gone: unreadable
    reported = []
    predictor = predict.load_predictor(str(export_dir))
    calls = []
    records, skipped = predict.predict_files(predictor, files, tmp_path / "out", batch_size=4,
                                             report=lambda f, r: reported.append(f),
                                             progress=lambda done, total: calls.append(done))
    n = len(files)  # progress after every batch of 4, ending at the number of files
    assert calls == [min(k + 4, n) for k in range(0, n, 4)] and calls[-1] == n
    assert sorted(reported) == sorted(bad + [str(tmp_path / "vanished.jpg")])
    assert [f for f, _ in skipped] == reported
    reasons = dict(skipped)
    assert reasons[str(folder / "text.png")].startswith("not an image")
    assert reasons[str(folder / "nested" / "truncated.jpg")].startswith("cannot be decoded")
    assert reasons[str(tmp_path / "vanished.jpg")] == "No such file or directory"
    assert sorted(r["file"] for r in records) == sorted(good)

    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    loaded = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    overlay_names = set()
    for record in records:
        image = good[record["file"]]
        with open(record["file"], "rb") as f:
            direct = loaded(images_bytes=tf.constant([f.read()]))
        assert record["box"] == direct["boxes"].numpy()[0].tolist()
        assert record["class_id"] == int(direct["classes"].numpy()[0, 0])
        assert record["class_name"] == NAMES[record["class_id"]]
        assert record["score"] == pytest.approx(float(direct["scores"].numpy()[0, 0]))
        assert [t["class_id"] for t in record["top_k"]] == direct["classes"].numpy()[0].tolist()
        assert (record["height"], record["width"]) == image.shape[:2]
        overlay = cv2.imread(record["overlay"], cv2.IMREAD_COLOR)
        assert overlay.shape == image.shape  # drawn on the image at its own size
        x0, y0, x1, y1 = record["box"]
        # The box's bottom edge, in visualize's predicted-box colour (RGB red; BGR on disk).
        # (drawn inside the box, dashed when the box is the whole image).
        edge = overlay[max(y1 - 1, 0):y1 + 1, x0:x1 + 1]
        assert (edge == np.array(PRED_COLOR[::-1])).all(-1).any()
        overlay_names.add(os.path.basename(record["overlay"]))
    assert len(overlay_names) == 3  # a.jpg and nested/a.png do not overwrite each other
    assert any(r["box"] != [0, 0, r["width"] - 1, r["height"] - 1] for r in records)


def test_keras_model_gives_the_same_predictions(saved, images, tmp_path):
    keras_path, export_dir = saved
    folder, good, _ = images
    files = sorted(good)
    settings = dict(model_path=str(keras_path), mean=MEAN, std=STD, class_names=NAMES)
    keras_predictor = predict.load_predictor(str(keras_path), settings, THRESHOLD, top_k=2)
    from_keras, _ = predict.predict_files(keras_predictor, files, tmp_path / "k", overlays=False)
    saved_predictor = predict.load_predictor(str(export_dir))
    from_saved, _ = predict.predict_files(saved_predictor, files, tmp_path / "s", overlays=False)
    for a, b in zip(from_keras, from_saved):
        assert (a["file"], a["class_id"], a["box"]) == (b["file"], b["class_id"], b["box"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    with pytest.raises(ValueError, match="model_path: expected a SavedModel directory or a "
                                         ".keras file"):
        predict.load_predictor(str(tmp_path))


def test_export_and_predict_command_lines(saved, images, tmp_path):
    keras_path, _ = saved
    folder, good, bad = images
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    out = tmp_path / "cli_export"
    preds = tmp_path / "cli_preds"
    python = sys.executable
    script = (
        f"{python} scripts/export.py --model_path={keras_path} --output_dir={out} "
        f"--mean=120,110,100 --std=60,55,50 --class_names={names} --top_k=2 && "
        f"{python} scripts/export.py --model_path={keras_path} --output_dir={out} "
        "--mean=1,2,3 --std=1,1,1; "
        f"echo export-again-status=$?; "
        f"{python} scripts/predict.py --model_path={out} --output_dir={preds} --nooverlays "
        f"{folder}; "
        f"echo predict-status=$?"
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert "export-again-status=2" in done.stdout, done.stderr[-3000:]  # exists, no --overwrite
    assert "already exists" in done.stderr
    assert "predict-status=1" in done.stdout, done.stderr[-3000:]  # some files were skipped
    for path in bad:
        assert f"skipped {path}:" in done.stderr
    prep = json.loads((out / "assets" / "preprocessing.json").read_text())
    assert prep["image_size"] == [IMAGE_SIZE, IMAGE_SIZE]  # from the config.json beside the model
    assert prep["mean"] == [120, 110, 100]
    training_config = json.loads((out / "assets" / "training_config.json").read_text())
    assert training_config == {"data": {"image_size": IMAGE_SIZE}}
    records = [json.loads(line) for line in (preds / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in records) == sorted(good)
    assert {r["class_name"] for r in records} <= set(NAMES)
    assert all(r["overlay"] is None for r in records)


def test_predict_into_a_folder_another_process_writes_fails_fast(saved, images, tmp_path):
    from tests.helpers import HOLD_LOCK as _HOLD

    _, export_dir = saved
    folder, _, _ = images
    preds = tmp_path / "busy_preds"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(preds)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = subprocess.run(
            [sys.executable, "scripts/predict.py", f"--model_path={export_dir}",
             f"--output_dir={preds}", "--nooverlays", str(folder)],
            capture_output=True, text=True, cwd=REPO, timeout=300,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{preds} is in use by another process (pid {holder.pid})" in done.stderr
    assert not (preds / "predictions.jsonl").exists()


def test_progress_printer_prints_each_tenth_in_a_log():
    import io

    from keras_has.cli.predict import progress_printer

    log = io.StringIO()
    progress = progress_printer(log)
    for done in range(16, 161, 16):  # 10 batches of 16 out of 160
        progress(done, 160)
    assert log.getvalue().splitlines() == [f"predicted {d}/160 images" for d in range(16, 161, 16)]
    log = io.StringIO()
    progress = progress_printer(log)
    for done in range(4, 101, 4):  # 25 batches of 4 out of 100: the first, then a line
        progress(done, 100)        # each time a tenth is passed
    assert log.getvalue().splitlines() == [f"predicted {d}/100 images" for d in
                                           (4, 12, 20, 32, 40, 52, 60, 72, 80, 92, 100)]

