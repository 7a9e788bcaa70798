"""Run folders: one owner at a time (released on SIGKILL), resumed only with their settings."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from keras_has.train import run_folder

from tests.helpers import HOLD_LOCK as _HOLD  # noqa: E402


def test_second_owner_fails_fast_naming_folder_and_pid_and_sigkill_releases(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(run_folder.RunFolderBusy,
                           match=f"{folder} is in use by another process \\(pid {holder.pid}\\)"):
            with run_folder.RunLock(folder):
                pass
        assert time.monotonic() - start < 2.0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_folder.RunLock(folder):  # the kernel released the killed owner's lock
        assert (folder / ".lock").read_text().strip() == str(os.getpid())


def test_a_rejected_run_leaves_no_folder_behind(tmp_path):
    folder = tmp_path / "new_run"
    with pytest.raises(ValueError):
        with run_folder.RunLock(folder):
            raise ValueError("bad data")
    assert not folder.exists()
    existing = tmp_path / "old_run"
    existing.mkdir()
    with pytest.raises(ValueError):
        with run_folder.RunLock(existing):
            raise ValueError("bad data")
    assert existing.is_dir()  # a folder the user made is never removed


def _config(**kwargs):
    from keras_has import config as cfg

    base = dict(model="tiny_gap", output_dir="/tmp/x", epochs=2)
    base.update(kwargs)
    return cfg.TrainConfig(**base).to_dict()


def test_differences_list_changed_settings_but_not_resumable_ones():
    from keras_has import config as cfg

    old = _config()
    new = _config(epochs=5, verbose=2, output_dir="/elsewhere",
                  hiding=cfg.HidingConfig(grid_sizes=(16,), hide_prob=0.5),
                  data=cfg.DataConfig(image_size=48))
    assert run_folder.config_differences(old, new) == [
        "data.image_size: 224 -> 48", "hiding.grid_sizes: [] -> [16]"]


def test_check_resume_refuses_then_overwrite_moves_the_old_run_aside(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config()))
    (folder / "training_log.csv").write_text("epoch\n0\n")
    assert run_folder.check_resume(folder, _config(epochs=9)) is None  # more epochs: fine
    with pytest.raises(ValueError, match=r"holds a run with other settings \(seed: 0 -> 3\)"):
        run_folder.check_resume(folder, _config(seed=3))
    assert json.loads((folder / "config.json").read_text())["seed"] == 0  # untouched
    with run_folder.RunLock(folder):
        aside = run_folder.check_resume(folder, _config(seed=3), overwrite=True)
        assert sorted(os.listdir(folder)) == [".lock"]
    assert sorted(os.listdir(aside)) == ["config.json", "training_log.csv"]


def test_train_refuses_a_changed_rerun_before_writing(tmp_path):
    from keras_has import config as cfg
    from keras_has.train.trainer import train
    from tests.helpers import make_wsol_folder

    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=2, size=32)
    config = cfg.TrainConfig(
        model="tiny_gap", output_dir=str(tmp_path / "run"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split=None),
        hiding=cfg.HidingConfig(grid_sizes=(8,), hide_prob=0.5), best_metric="",
        epochs=1, strategy="one_device", eval_every=0, verbose=0,
        model_kwargs={"widths": (8, 16)})
    train(config)
    def written():  # every file of the run but the lock (which records the last pid)
        return {p: os.path.getmtime(tmp_path / "run" / p)
                for p in os.listdir(tmp_path / "run") if p != ".lock"}

    before = written()
    import dataclasses

    changed = dataclasses.replace(config, hiding=cfg.HidingConfig(grid_sizes=(), hide_prob=0.0))
    with pytest.raises(ValueError, match="hiding.grid_sizes: \\[8\\] -> \\[\\]"):
        train(changed)
    assert before == written()
    result = train(changed, overwrite=True)
    assert result.epochs_run == [1]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hiding"]["grid_sizes"] == []
    assert [p for p in os.listdir(tmp_path) if p.startswith("run.old-")]


def test_batch_larger_than_the_split_with_fixed_steps_is_a_clear_error(tmp_path):
    from keras_has import config as cfg
    from keras_has.train.trainer import train
    from tests.helpers import make_wsol_folder

    root = make_wsol_folder(str(tmp_path / "d"), n_train=4, n_test=2, size=32)
    config = cfg.TrainConfig(
        model="tiny_gap", output_dir=str(tmp_path / "run"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=8, eval_split=None),
        best_metric="", epochs=1, steps_per_epoch=3, strategy="one_device", eval_every=0,
        verbose=0, model_kwargs={"widths": (8, 16)})
    with pytest.raises(ValueError, match="batch_size: the global batch 8 is larger than the "
                                         "training split 'train'"):
        train(config)
    assert not (tmp_path / "run").exists()  # nothing written for a rejected run


def test_skip_corrupt_and_clip_boxes_reach_the_wsol_source(tmp_path):
    from keras_has import config as cfg
    from keras_has.train.trainer import source_from_config
    from tests.helpers import make_wsol_folder

    root = make_wsol_folder(str(tmp_path / "d"), n_train=4, n_test=2, size=32)
    (tmp_path / "d" / "images" / "train" / "1" / "1.png").write_bytes(b"not a png")
    base = dict(model="tiny_gap", output_dir=str(tmp_path / "run"))
    strict = source_from_config(cfg.TrainConfig(**base, data=cfg.DataConfig(source=root)))
    with pytest.raises(ValueError, match=r"train/1/1\.png"):
        strict.split_metadata("train")
    lenient = source_from_config(cfg.TrainConfig(**base, data=cfg.DataConfig(
        source=root, skip_corrupt=True, clip_boxes=True)))
    meta = lenient.split_metadata("train")
    assert meta.num_skipped == 1 and "train/1/1.png" not in meta.image_ids
    with pytest.raises(ValueError, match="skip_corrupt: expected False unless source is a WSOL"):
        cfg.DataConfig(source="synthetic", skip_corrupt=True)


def test_skipped_images_are_reported_by_training_and_evaluation(tmp_path):
    """A truncated image in each split: training with skip_corrupt lists it in the run
    folder and its result; evaluation with skip_corrupt reports its count and id."""
    from keras_has import config as cfg
    from keras_has.serve.evaluate import evaluate_model_file
    from keras_has.train.trainer import train
    from tests.helpers import make_wsol_folder

    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4, size=32)
    for rel in ("train/1/1.png", "test/0/2.png"):
        path = tmp_path / "d" / "images" / rel
        path.write_bytes(path.read_bytes()[:40])  # a PNG cut short: header only
    config = cfg.TrainConfig(
        model="tiny_gap", output_dir=str(tmp_path / "run"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, skip_corrupt=True),
        best_metric="", epochs=1, strategy="one_device", eval_every=0, verbose=0,
        model_kwargs={"widths": (8, 16)})
    result = train(config)
    assert result.skipped_images == {"test": ["test/0/2.png"], "train": ["train/1/1.png"]}
    written = json.loads((tmp_path / "run" / "skipped_images.json").read_text())
    assert written == result.skipped_images
    with pytest.raises(ValueError, match=r"test/0/2\.png"):
        evaluate_model_file(result.model_path, root, split="test", num_examples=0)
    ev, _, _ = evaluate_model_file(result.model_path, root, split="test", num_examples=0,
                                   skip_corrupt=True)
    assert ev.metrics["num_skipped_images"] == 1
    assert ev.metrics["skipped_images"] == ["test/0/2.png"]
    assert ev.metrics["num_images"] == 3


def _backup(folder, epoch, values, suffix=""):
    """A backup pair as the backup callback writes it (an h5 weights file, its JSON)."""
    import h5py
    import numpy as np

    folder.mkdir(exist_ok=True)
    with h5py.File(folder / f"latest.weights.h5{suffix}", "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.full((64, 64), values, "float32"))
    (folder / f"training_metadata.json{suffix}").write_text(json.dumps({"epoch": epoch,
                                                                        "batch": -1}))


def test_a_damaged_backup_falls_back_to_the_epoch_before(tmp_path):
    backup = tmp_path / "backup"
    assert run_folder.restore_intact_backup(backup) is None  # nothing to resume
    _backup(backup, 1, 1.0, ".bkp")
    _backup(backup, 2, 2.0)
    assert run_folder.restore_intact_backup(backup) is None  # intact: untouched
    weights = backup / "latest.weights.h5"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])  # cut short (a kill, a full disk)
    message = run_folder.restore_intact_backup(backup)
    assert "latest.weights.h5 cannot be read" in message and "after 1 finished" in message
    assert weights.read_bytes() == (backup / "latest.weights.h5.bkp").read_bytes()
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    assert run_folder.restore_intact_backup(backup) is None  # now intact


def test_garbage_backup_metadata_is_named(tmp_path):
    backup = tmp_path / "backup"
    _backup(backup, 2, 2.0)
    (backup / "training_metadata.json").write_text("garbage")
    with pytest.raises(ValueError, match=r"resume: .*training_metadata\.json is not a backup "
                                         r"record .*no intact earlier backup.*delete"):
        run_folder.restore_intact_backup(backup)
    _backup(backup, 1, 1.0, ".bkp")
    assert "training_metadata.json is not a backup record" in run_folder.restore_intact_backup(backup)
