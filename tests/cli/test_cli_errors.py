"""The evaluate / export / predict commands: a run's own records are read (a truncated
training image does not stop the evaluation of the test split), and expected errors are
one line on stderr with exit status 2 and nothing written."""
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_has import data
from keras_has.localize import evaluation
from keras_has.serve import evaluate as serve_evaluate
from keras_has.train import run_folder
from keras_has.models import get_model
from keras_has.data.preprocessing import make_preprocessing

from tests.helpers import REPO_ROOT  # noqa: E402

REPO = str(REPO_ROOT)
SIZE = 32
RECORDED = make_preprocessing("dataset", (101.0, 102.0, 103.0), (41.0, 42.0, 43.0))


def write_split(root, split, images, truncate=()):
    """A WSOL split of JPEGs (label i % 2, one box each); the files in `truncate` keep
    only their first half (a valid header, no end marker)."""
    meta = root / "metadata" / split
    meta.mkdir(parents=True)
    (root / "images").mkdir(exist_ok=True)
    rows = []
    for i, image in enumerate(images):
        name = f"{split}_{i}.jpg"
        encoded = cv2.imencode(".jpg", image[:, :, ::-1])[1].tobytes()
        if name in truncate:
            encoded = encoded[:len(encoded) // 2]
        (root / "images" / name).write_bytes(encoded)
        rows.append(name)
    (meta / "image_ids.txt").write_text("".join(f"{r}\n" for r in rows))
    (meta / "class_labels.txt").write_text("".join(f"{r},{i % 2}\n" for i, r in enumerate(rows)))
    (meta / "image_sizes.txt").write_text("".join(f"{r},{SIZE},{SIZE}\n" for r in rows))
    (meta / "localization.txt").write_text("".join(f"{r},4,6,20,25\n" for r in rows))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A WSOL folder whose train split has a truncated JPEG, and a run folder that
    recorded its preprocessing (as training does) beside a tiny model."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    images = [cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (SIZE, SIZE))
              for _ in range(6)]
    wsol = root / "wsol"
    write_split(wsol, "train", images[:3], truncate=("train_1.jpg",))
    write_split(wsol, "test", images[3:])
    write_split(wsol, "val", images[:3], truncate=("val_2.jpg",))
    folder = root / "run"
    folder.mkdir()
    model = get_model("tiny_gap", num_classes=2, input_shape=(SIZE, SIZE, 3), widths=(4, 8),
                      seed=0)
    model.save(folder / "model.keras")
    config = {"data": {"image_size": SIZE, "source": str(wsol), "train_split": "train"}}
    (folder / "config.json").write_text(json.dumps(config))
    run_folder.write_preprocessing(folder, RECORDED, RECORDED.mean, RECORDED.std, "train")
    return {"root": root, "wsol": wsol, "folder": folder, "model": model}


def test_evaluate_reads_the_runs_preprocessing_not_the_train_split(run):
    # The train split cannot be read: measuring its statistics names the bad file.
    with pytest.raises(ValueError, match="train_1.jpg"):
        data.get_normalization(data.get_source(str(run["wsol"])), split="train")
    result, prep, _ = serve_evaluate.evaluate_model_file(
        run["folder"] / "model.keras", str(run["wsol"]), split="test", batch_size=2,
        num_examples=0, verbose=0)
    assert prep == RECORDED
    expected = evaluation.run_localization(
        run["model"], data.make_eval_dataset(str(run["wsol"]), SIZE, 2, split="test",
                                             preprocessing=RECORDED), verbose=0)
    assert result.metrics == expected.metrics
    # An explicit override wins and changes what the model sees.
    _, other, _ = serve_evaluate.evaluate_model_file(
        run["folder"] / "model.keras", str(run["wsol"]), split="test", batch_size=2,
        mean=(0, 0, 0), std=(1, 1, 1), num_examples=0, verbose=0)
    assert other == make_preprocessing("dataset", (0, 0, 0), (1, 1, 1))


def test_a_truncated_image_of_the_evaluated_split_is_named_or_skipped(run):
    kwargs = dict(split="val", batch_size=2, num_examples=0, verbose=0)
    with pytest.raises(ValueError, match="val_2.jpg"):
        serve_evaluate.evaluate_model_file(run["folder"] / "model.keras", str(run["wsol"]), **kwargs)
    result, _, _ = serve_evaluate.evaluate_model_file(run["folder"] / "model.keras",
                                                  str(run["wsol"]), skip_corrupt=True, **kwargs)
    expected = evaluation.run_localization(
        run["model"], data.make_eval_dataset(
            data.get_source(str(run["wsol"]), skip_corrupt=True), SIZE, 2, split="val",
            preprocessing=RECORDED), verbose=0)
    counted = {k: result.metrics.pop(k) for k in ("num_skipped_images", "skipped_images")}
    assert result.metrics == expected.metrics
    assert len(result.ious) == 2  # the two readable images
    assert counted["num_skipped_images"] == 1 and "val_2.jpg" in str(counted["skipped_images"])
    with pytest.raises(ValueError, match="skip_corrupt: applies to WSOL metadata folders"):
        serve_evaluate.evaluate_model_file(run["folder"] / "model.keras", "synthetic",
                                       skip_corrupt=True, **kwargs)


def run_commands(commands, cwd):
    """Runs the commands side by side (a TensorFlow start-up each); returns their
    `CompletedProcess`-like (returncode, stdout, stderr) by name."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", PYTHONPATH=REPO)
    processes = {name: subprocess.Popen([sys.executable, *cmd], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
                 for name, cmd in commands.items()}
    done = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        done[name] = (process.returncode, stdout, stderr)
    return done


def test_commands_print_one_line_for_expected_errors_and_write_nothing(run, tmp_path):
    folder, wsol = run["folder"], run["wsol"]
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.full((8, 8, 3), 90, np.uint8))
    script = lambda name: os.path.join(REPO, "scripts", f"{name}.py")  # noqa: E731
    notes = tmp_path / "notes.txt"
    notes.write_text("a user's notes")
    text_model = tmp_path / "text.keras"
    text_model.write_text("not a model")
    cut_model = tmp_path / "cut.keras"
    cut_model.write_bytes((folder / "model.keras").read_bytes()[:600])
    commands = {
        "export_under_file": [script("export"), f"--model_path={folder / 'model.keras'}",
                              f"--output_dir={notes / 'export'}"],
        "export_overwrite_file": [script("export"), f"--model_path={folder / 'model.keras'}",
                                  f"--output_dir={notes}", "--overwrite"],
        "export_text_model": [script("export"), f"--model_path={text_model}",
                              f"--output_dir={tmp_path / 'export_text'}"],
        "evaluate_cut_model": [script("evaluate"), f"--model_path={cut_model}",
                               f"--source={wsol}", f"--output_dir={tmp_path / 'eval_cut'}"],
        "predict_text_model": [script("predict"), f"--model_path={text_model}",
                               f"--output_dir={tmp_path / 'pred_text'}", str(image)],
        "evaluate_not_a_model": [script("evaluate"), f"--model_path={wsol}",
                                 f"--out_dir={tmp_path / 'eval_out2'}", "--verbosity=1"],
        "evaluate_ok": [script("evaluate"), f"--model_path={folder / 'model.keras'}",
                        f"--source={wsol}", "--batch_size=2", "--num_examples=2",
                        f"--output_dir={tmp_path / 'eval_ok'}"],
        "export_bad_mean": [script("export"), f"--model_path={folder / 'model.keras'}",
                            f"--output_dir={tmp_path / 'export_out'}", "--mean=1,2",
                            "--std=1,1,1"],
        "predict_missing_model": [script("predict"), f"--model_path={tmp_path / 'none'}",
                                  f"--output_dir={tmp_path / 'pred_out'}", str(image)],
    }
    done = run_commands(commands, cwd=tmp_path)
    # Values the flags' config rejects say "invalid configuration"; errors found while
    # running (a folder that is not a model) do not.
    not_archive = r"model_path: expected a Keras model archive \(\.keras, written by model\.save\)"
    expected = {
        "export_under_file": rf"export\.py: cannot write {re.escape(str(notes))}.*: a file stands "
                             r"where a folder is needed; choose an output folder you can write to",
        "export_overwrite_file": r"export\.py: (invalid configuration: )?output_dir: expected a "
                                 r"new folder or an earlier export \(this path is a file",
        "export_text_model": rf"export\.py: {not_archive}, received .*text\.keras.*not a zip",
        "evaluate_cut_model": rf"evaluate\.py: {not_archive}, received .*cut\.keras",
        "predict_text_model": rf"predict\.py: {not_archive}, received .*text\.keras",
        "evaluate_not_a_model": rf"evaluate\.py: saved_model: {wsol} is not a SavedModel",
        "export_bad_mean": r"export\.py: (invalid configuration: )?(preprocessing )?mean: "
                           r"expected 3",
        "predict_missing_model": r"predict\.py: (invalid configuration: )?model_path: "
                                 r"expected an existing SavedModel",
    }
    for name, pattern in expected.items():
        code, _, stderr = done[name]
        assert code == 2, (name, stderr[-3000:])
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert re.match(pattern, lines[-1]), (name, lines[-5:])
        if name == "evaluate_not_a_model":  # --verbosity=1: the traceback too
            assert "Traceback (most recent call last)" in stderr
        else:
            assert len(lines) == 1, (name, lines)
    for left in ("eval_out2", "export_out", "pred_out", "export_text", "eval_cut", "pred_text"):
        assert not (tmp_path / left).exists(), left
    assert notes.read_text() == "a user's notes"
    # The good evaluation reads the test split only, with the run's preprocessing.
    code, stdout, stderr = done["evaluate_ok"]
    assert code == 0, stderr[-3000:]
    metrics = json.loads((tmp_path / "eval_ok" / "metrics.json").read_text())
    in_process, _, _ = serve_evaluate.evaluate_model_file(
        folder / "model.keras", str(wsol), split="test", batch_size=2, num_examples=0,
        verbose=0)
    assert metrics == pytest.approx(in_process.metrics)
    assert "top1_cls" in stdout and (tmp_path / "eval_ok" / "gallery.png").is_file()


def test_os_errors_while_writing_are_one_line_naming_the_path():
    from keras_has.cli.common import expected_errors, one_line

    denied = PermissionError(13, "Permission denied", "/data/runs/x/.lock")
    assert isinstance(denied, expected_errors())
    assert one_line(denied) == ("cannot write /data/runs/x/.lock: permission denied; choose an "
                                "output folder you can write to")
    assert one_line(FileExistsError("export_dir: expected a new folder")) == \
        "export_dir: expected a new folder"  # the product's own messages pass unchanged

