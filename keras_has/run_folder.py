"""A training run's folder: one owner at a time, and resumed only with its own settings.

`RunLock(folder)` is an advisory lock (`fcntl.flock` on `folder/.lock`, which holds the
owner's pid). The kernel releases it when the owner exits in any way, SIGKILL included,
so a killed run never leaves a stale lock; a second process that wants the folder
fails at once with `RunFolderBusy`, naming the folder and the holder's pid. On systems
without `fcntl` (Windows) the lock is a no-op.

`check_resume(config_path, config_dict, overwrite)` compares a new run's settings with
the `config.json` already in the folder: settings that may change between a run and its
resumption (`RESUMABLE_KEYS`: more epochs, verbosity, evaluation frequency, where it
runs) are ignored; any other difference fails with a message listing them, unless
`overwrite`, which moves the old folder aside (`<folder>.old-<time>`) first.
"""
from __future__ import annotations

import json
import os
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunFolderBusy", "RunLock", "RESUMABLE_KEYS", "config_differences",
           "check_resume"]

LOCK_NAME = ".lock"
# Dotted TrainConfig keys that a resumed run may change.
RESUMABLE_KEYS = ("epochs", "verbose", "eval_every", "strategy", "tpu", "output_dir",
                  "data.eval_batch_size", "best_metric", "best_mode")


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Holds `folder/.lock` for the duration of a `with` block (see the module docstring).

    Args:
      folder: the run folder (created if missing; removed again on a failed run that
        wrote nothing else into a folder it created).
    """

    def __init__(self, folder):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd = None
        self._created = False

    def __enter__(self):
        self._created = not os.path.exists(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderBusy(
                    f"output_dir: {self.folder} is in use by another process (pid "
                    f"{holder}); wait for it to finish or choose another output_dir"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, exc_type, exc, tb):
        fd, self._fd = self._fd, None
        if fd is None:
            return False
        if exc_type is not None and self._created and os.listdir(self.folder) == [LOCK_NAME]:
            os.remove(self.path)  # a rejected run leaves nothing behind
            os.close(fd)
            os.rmdir(self.folder)
            return False
        os.close(fd)  # closing the descriptor releases the lock
        return False


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "model_kwargs":
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(old: dict, new: dict, ignore=RESUMABLE_KEYS) -> list[str]:
    """`"key: old -> new"` for every setting that differs, outside `ignore` (dotted keys)."""
    a = _flatten(json.loads(json.dumps(old)))
    b = _flatten(json.loads(json.dumps(new)))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}"
            for k in sorted(set(a) | set(b))
            if k not in ignore and k != "version" and a.get(k) != b.get(k)]


def check_resume(folder, config_dict: dict, overwrite: bool = False) -> str | None:
    """Checks a run folder's `config.json` against `config_dict` before anything is written.

    Returns None, or with `overwrite` and a folder that holds a run, the path the old
    folder was moved to (the caller then starts afresh in `folder`).

    Raises:
      ValueError: the folder holds a run with other settings and `overwrite` is False.
    """
    folder = os.path.abspath(os.fspath(folder))
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        return None
    if overwrite:
        # Everything but the lock moves, so the lock held on `folder` stays valid.
        aside = f"{folder}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.makedirs(aside)
        for entry in os.listdir(folder):
            if entry != LOCK_NAME:
                os.replace(os.path.join(folder, entry), os.path.join(aside, entry))
        return aside
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"output_dir: {path} cannot be read ({e}); pass overwrite "
                         "(--overwrite) to start over") from None
    diffs = config_differences(old, config_dict)
    if diffs:
        raise ValueError(
            f"output_dir: {folder} holds a run with other settings ("
            + "; ".join(diffs) + "); resume it with its own settings, choose another "
            "output_dir, or pass overwrite (--overwrite) to start over (the old folder is "
            "moved aside)")
    return None
