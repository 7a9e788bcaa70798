"""Atomic writes: complete file or the previous one, never a partial one."""
import json
import os

import pytest

from keras_has.util.files import atomic_write_bytes, atomic_write_json


def test_writes_creates_folders_and_replaces(tmp_path):
    path = tmp_path / "a" / "b" / "x.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["x.json"]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_raises(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})  # not JSON-serialisable
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_path_keeps_extension_and_old_file_on_error(tmp_path):
    from keras_has.util.files import atomic_path

    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    with atomic_path(path) as tmp:
        assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("writer failed")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["model.keras"]


def test_written_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        path = tmp_path / "out.json"
        atomic_write_json(path, {"a": 1})
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    finally:
        os.umask(old)


def test_jsonable_converts_numpy_and_non_finite_values():
    import numpy as np

    from keras_has.util.files import jsonable

    value = {1: (np.float32(0.5), np.int64(3), float("nan")), "b": [np.inf, True, None, "s"],
             "c": np.float64(2.25)}
    out = jsonable(value)
    assert out == {"1": [0.5, 3, None], "b": [None, True, None, "s"], "c": 2.25}
    assert type(out["1"][1]) is int and type(out["1"][0]) is float
    json.dumps(out, allow_nan=False)


def test_a_killed_writers_temporaries_are_removed_by_the_next_writer(tmp_path):
    import subprocess
    import sys

    from keras_has.util.files import staging_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    alive = str(os.getppid())  # a running process that is not this one
    for pid in (dead, alive):
        (tmp_path / f".tmp-out.json.{pid}.abc.json").write_text("partial")
        (tmp_path / f".tmp-export.{pid}.xyz").mkdir()
        (tmp_path / f".tmp-export.{pid}.xyz" / "saved_model.pb").write_text("partial")
    atomic_write_json(tmp_path / "out.json", {"a": 1})
    staging = staging_dir(tmp_path, "export")
    left = sorted(os.listdir(tmp_path))
    assert f".tmp-out.json.{dead}.abc.json" not in left and f".tmp-export.{dead}.xyz" not in left
    assert f".tmp-out.json.{alive}.abc.json" in left and f".tmp-export.{alive}.xyz" in left
    assert os.path.basename(staging).startswith(f".tmp-export.{os.getpid()}.")
