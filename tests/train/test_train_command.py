"""scripts/train.py: flagfiles, bad flags, and real runs in subprocesses.

The runs use a tiny WSOL metadata folder written by the test (16 train / 4 test images
of 32 x 32 pixels, 2 classes) and the `tiny_gap` model, so each run is a few seconds
of training on top of TensorFlow's start-up:
* MirroredStrategy over 2 logical CPU devices (configured before TF initialises, in
  a wrapper process);
* MultiWorkerMirroredStrategy with 2 local worker processes and TF_CONFIG on loopback;
* SIGKILL after an epoch's backup, then the same command again: every epoch exactly
  once in the CSV log, optimizer step count intact.
"""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO_ROOT, make_wsol_folder, subprocess_env  # noqa: E402

TRAIN = str(REPO_ROOT / "scripts" / "train.py")
# scripts/train.py's flagfiles (the temporal ones belong to scripts/*_temporal.py and are
# checked by tests/test_temporal_*.py).
FLAGFILES = sorted(os.path.basename(p) for p in glob.glob(str(REPO_ROOT / "flags" / "*.cfg"))
                   if not os.path.basename(p).startswith(("temporal_", "thumos14_")))


@pytest.fixture(scope="module")
def wsol(tmp_path_factory):
    root = make_wsol_folder(str(tmp_path_factory.mktemp("wsol") / "tiny"))
    from keras_has import data

    data.get_normalization(root)  # cache the statistics once, before parallel workers
    return root


@pytest.fixture(scope="module")
def script():
    """`keras-has train`'s module (defines its flags once, on import)."""
    from keras_has.cli import train

    return train


def parse(script, argv):
    """The TrainConfig that `keras-has train argv` would run (flagfiles expanded and
    names checked against the registries, as the command does)."""
    from absl import flags

    from keras_has.cli.common import check_against_registries
    from keras_has.cli.config_flags import config_from_flags
    from keras_has.cli.flagfiles import expand_flagfiles
    from keras_has.config import TrainConfig

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py"] + expand_flagfiles(argv))
    config = config_from_flags(TrainConfig, flags.FLAGS)
    check_against_registries(config)
    return config


def tiny_args(wsol, out, epochs=1, steps=2, extra=()):
    return [f"--source={wsol}", "--model=tiny_gap", "--image_size=32", "--batch_size=4",
            f"--epochs={epochs}", f"--steps_per_epoch={steps}", f"--output_dir={out}",
            "--eval_every=0", "--verbose=2", "--grid_sizes=8", "--hide_prob=0.5", *extra]


# ------------------------------------------------------------------------ flagfiles
@pytest.mark.parametrize("name", FLAGFILES)
def test_every_flagfile_builds_a_valid_config(script, name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # nested --flagfile paths are relative to the repo root
    data_root = tmp_path / "data"
    (data_root / "metadata").mkdir(parents=True)
    argv = [f"--flagfile=flags/{name}", f"--output_dir={tmp_path / 'run'}"]
    if name != "quickstart.cfg":  # point the placeholder dataset path at a real folder
        argv.append(f"--source={data_root}")
    c = parse(script, argv)
    stem = name[:-4]
    assert not (tmp_path / "run").exists()
    if stem == "quickstart":
        assert (c.model, c.data.source) == ("tiny_gap", "synthetic")
        # A 16x16 CAM at 64 px, trained at the test scale with Adam and a cosine decay.
        assert c.model_kwargs == {"widths": (16, 32, 64, 128), "pools": 2}
        assert (c.data.image_size, c.data.resize_size) == (64, 64)
        assert (c.optim.optimizer, c.optim.lr_schedule) == ("adam", "cosine")
        assert c.hiding.enabled
        return
    if stem == "pets3_scratch":  # the README's from-scratch pets3 row
        assert (c.model, c.data.image_size, c.epochs) == ("tiny_gap", 128, 40)
        assert c.hiding.grid_sizes == (0, 16, 32, 48, 64) and c.optim.optimizer == "sgd"
        return
    family, _, variant = stem.partition("_")
    if family in ("alexnet", "googlenet"):  # Table 1 rows
        assert c.model == f"{family}_gap"
        assert c.optim == type(c.optim)()  # the authors' schedule, unchanged
        assert (c.epochs, c.data.image_size, c.data.global_batch_size) == (55, 224, 256)
        expected = {"gap": (), "has_16": (16,), "has_32": (32,), "has_44": (44,),
                    "has_56": (56,), "has_mixed": (0, 16, 32, 44, 56)}[variant]
        assert c.hiding.grid_sizes == expected
        assert c.hiding.enabled == (variant != "gap")
    elif family == "finetune":  # finetune_mobilenetv2_<gap|has>: own WSOL folder
        net, _, kind = variant.rpartition("_")
        assert c.model == f"{net}_gap" and c.model_kwargs == {"weights": "imagenet"}
        assert (c.preprocessing, c.optim.lr_classifier_ratio) == ("auto", 10.0)
        assert c.data.global_batch_size == 32 and c.optim.weight_decay_until_epoch is None
        assert c.optim.warmup_epochs > 0
        assert c.hiding.enabled == (kind == "has")
        if kind == "has":  # the paper's sizes, relative to a 224 crop
            assert c.hiding.scaled_grid_sizes(160) == (0, 11, 23, 31, 40)
    else:  # cub_<net>_<gap|has>
        assert family == "cub"
        net, _, kind = variant.rpartition("_")
        assert c.model == f"{net}_gap"
        assert (c.epochs, c.data.global_batch_size, c.optim.lr_boundaries) == (50, 32, (15, 30, 45))
        lr = c.optim.lr_values
        np.testing.assert_allclose(lr[1:], [lr[0] / 10, lr[0] / 100, lr[0] / 1000], rtol=1e-4)
        assert c.optim.weight_decay_until_epoch is None
        assert c.model_kwargs == {"weights": "imagenet"}
        assert (c.preprocessing, c.optim.lr_classifier_ratio) == ("auto", 10.0)
        assert c.hiding.enabled == (kind == "has")


def test_tfds_ilsvrc_include_overrides_the_folder(script, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    c = parse(script, ["--flagfile=flags/alexnet_has_mixed.cfg",
                       "--flagfile=flags/common/ilsvrc_tfds.cfg",
                       f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'run'}"])
    assert (c.data.source, c.data.eval_split, c.data.data_dir) == (
        "imagenet2012", "validation", str(tmp_path))
    assert c.hiding.grid_sizes == (0, 16, 32, 44, 56)


@pytest.mark.parametrize("argv, flag", [
    (["--model=resnet9000"], "model"),
    (["--hide_prob=1.5"], "hide_prob"),
    (["--grid_sizes=16,x"], "grid_sizes"),
    (["--grid_sizes=16,-8"], "grid_sizes"),
    (["--source=/no/such/ILSVRC"], "source"),
    (["--lr_values=0.1,0.01"], "lr_values"),
    (["--mixed_precision=fp8"], "mixed_precision"),
    (["--model_arg=weights"], "model_arg"),
    (["--output_dir="], "output_dir"),
    (["--preprocessing=imagenet"], "preprocessing"),
    (["--lr_classifier_ratio=0"], "lr_classifier_ratio"),
    (["--lr_classifier_ratio=-10"], "lr_classifier_ratio"),
])
def test_bad_flags_fail_naming_the_flag(script, tmp_path, argv, flag):
    from absl import flags

    base = ["--model=tiny_gap", "--source=synthetic", f"--output_dir={tmp_path / 'run'}"]
    # Values a flag's parser rejects fail while parsing (absl names the flag); values
    # the config rejects fail building it ("<flag>: expected ..., received ...").
    with pytest.raises((ValueError, flags.IllegalFlagValueError),
                       match=f"^({flag}:|flag --{flag}=)"):
        parse(script, base + argv)
    assert not (tmp_path / "run").exists()


def test_bad_flag_subprocess_fails_before_training_creating_nothing(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, TRAIN, "--model=tiny_gap", "--source=/no/such/WSOL/folder",
         f"--output_dir={out}"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "invalid configuration: source:" in proc.stderr
    assert "/no/such/WSOL/folder" in proc.stderr
    assert not out.exists()
    assert "epoch" not in proc.stdout  # failed before any training


# ---------------------------------------------------------------- real runs
_TWO_CPUS = (
    "import sys, runpy, tensorflow as tf\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
    "sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def _result_line(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("train.py: done;")]
    assert lines, stdout[-3000:]
    return lines[-1]


def _csv_epochs(path):
    from keras_has.train.trainer import read_csv_log

    return read_csv_log(str(path)).get("epoch", [])


def test_mirrored_over_two_logical_cpus(wsol, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _TWO_CPUS, TRAIN, *tiny_args(wsol, out)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=180,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = _result_line(proc.stdout)
    assert "replicas=2 global_batch=8 epochs_run=[1]" in line
    assert _csv_epochs(out / "training_log.csv") == [1]
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"] == "tiny_gap" and saved["hiding"]["grid_sizes"] == [8]
    assert (out / "model.keras").is_file() and (out / "checkpoints" / "epoch_001.weights.h5").is_file()
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    """The built-in dataset's `tiny` config prepared once (a single TFDS file per split,
    fewer files than workers) with its statistics cached."""
    from keras_has import data

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    source = data.get_source("synthetic", data_dir=data_dir, config="tiny")
    data.get_normalization(source)
    return ["--source=synthetic", "--source_config=tiny", f"--data_dir={data_dir}"]


@pytest.mark.parametrize("kind", ["wsol_folder",
                                  pytest.param("tfds_one_file", marks=pytest.mark.slow)])
def test_multi_worker_two_local_workers(wsol, tiny_synthetic, kind, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(wsol, out, extra=["--strategy=multi_worker"])
    if kind == "tfds_one_file":  # FILE sharding would fail: 1 file, 2 workers
        args = [a for a in args if not a.startswith("--source=")] + tiny_synthetic
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = subprocess_env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, TRAIN, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT))
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            results.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rc, stdout, stderr in results:
        assert rc == 0, stderr[-3000:]
        assert "replicas=2 global_batch=8 epochs_run=[1]" in _result_line(stdout)
    # The chief (worker 0) owns output_dir; worker 1 writes only under workers/worker_1.
    assert _csv_epochs(out / "training_log.csv") == [1]
    assert (out / "model.keras").is_file()
    assert (out / "workers" / "worker_1" / "backup" / "training_metadata.json").is_file()
    assert not (out / "workers" / "worker_0").exists()


def test_resume_after_sigkill(wsol, tmp_path):
    import keras

    out = tmp_path / "run"
    epochs, steps = 4, 20
    cmd = [sys.executable, TRAIN, *tiny_args(wsol, out, epochs=epochs, steps=steps)]
    meta = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=subprocess_env(), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            if meta.is_file():
                try:
                    if json.loads(meta.read_text())["epoch"] >= 1:
                        break
                except (ValueError, KeyError):
                    pass
            time.sleep(0.02)
        if proc.poll() is not None:
            pytest.fail("the first run ended before it could be killed:\n"
                        + proc.stdout.read()[-3000:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = json.loads(meta.read_text())["epoch"]
    assert 1 <= done < epochs
    assert not (out / "model.keras").exists()

    second = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=180,
                            cwd=REPO_ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"epochs_run={list(range(done + 1, epochs + 1))}" in _result_line(second.stdout)
    assert _csv_epochs(out / "training_log.csv") == list(range(1, epochs + 1))
    keras.saving.load_model(str(out / "model.keras"))  # the model for inference loads
    import h5py  # the training state is in the weights files: optimizer step count kept

    with h5py.File(out / "checkpoints" / f"epoch_{epochs:03d}.weights.h5", "r") as f:
        assert int(f["optimizer/vars/0"][()]) == epochs * steps
    assert sorted(os.listdir(out / "checkpoints")) == [
        f"epoch_{e:03d}.weights.h5" for e in range(1, epochs + 1)]


def test_train_split_not_divisible_by_the_batch(tmp_path):
    """One pass over 10 images at batch 4: two full steps, the last 2 images dropped."""
    from keras_has import config as cfg
    from keras_has.train.trainer import train

    root = make_wsol_folder(str(tmp_path / "odd"), n_train=10, n_test=3, size=32)
    config = cfg.TrainConfig(
        model="tiny_gap", output_dir=str(tmp_path / "run"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split="test"),
        hiding=cfg.HidingConfig(grid_sizes=(8,), hide_prob=0.5),
        epochs=1, strategy="one_device", eval_every=0, verbose=0,
        model_kwargs={"widths": (8, 16)})
    result = train(config)
    assert result.epochs_run == [1]
    assert result.global_batch_size == 4
    assert os.path.exists(result.model_path)


def _wait_for_backup(proc, meta, epoch, seconds=150):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if meta.is_file():
            try:
                if json.loads(meta.read_text())["epoch"] >= epoch:
                    return
            except (ValueError, KeyError):
                pass
        time.sleep(0.02)
    pytest.fail("the run ended before it could be interrupted:\n" + proc.stdout.read()[-3000:])


def test_ctrl_c_says_where_it_stopped_and_the_rerun_resumes(wsol, tmp_path):
    out = tmp_path / "run"
    epochs, steps = 4, 20
    cmd = [sys.executable, TRAIN, *tiny_args(wsol, out, epochs=epochs, steps=steps)]
    # As from a terminal: SIGINT handled (a shell's background job would inherit it ignored).
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), cwd=REPO_ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_backup(proc, out / "backup" / "training_metadata.json", 1)
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert re.fullmatch(r"train\.py: interrupted at epoch [2-4]; rerun the same command to "
                        r"resume", lines[-1]), lines[-5:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    second = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(),
                            timeout=180, cwd=REPO_ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert _csv_epochs(out / "training_log.csv") == list(range(1, epochs + 1))


@pytest.mark.slow  # the fallback itself: tests/train/test_run_folder.py (fast)
def test_a_damaged_backup_resumes_from_the_epoch_before(wsol, tmp_path):
    out = tmp_path / "run"
    first = subprocess.run([sys.executable, TRAIN, *tiny_args(wsol, out, epochs=2)],
                           capture_output=True, text=True, env=subprocess_env(), timeout=180,
                           cwd=REPO_ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    weights = out / "backup" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short
    second = subprocess.run([sys.executable, TRAIN, *tiny_args(wsol, out, epochs=3)],
                            capture_output=True, text=True, env=subprocess_env(), timeout=180,
                            cwd=REPO_ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "latest.weights.h5 cannot be read" in second.stdout
    assert "resuming from the backup of the epoch before (after 1 finished" in second.stdout
    assert "epochs_run=[2, 3]" in _result_line(second.stdout)
    assert _csv_epochs(out / "training_log.csv") == [1, 2, 3]

