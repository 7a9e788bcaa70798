"""Atomic file writes: a reader never sees a half-written file.

Every file keras-has writes (configs, metrics, logs, PNGs, predictions) goes through a
temporary file in the destination folder, then `os.replace` (atomic on POSIX and
Windows); on any error the temporary file is removed and the error propagates.
Temporary names carry the writer's pid (`.tmp-<name>.<pid>.<random>`), so what a killed
writer left behind is recognised and removed by the next writer of the same name.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from typing import Any

__all__ = ["read_text_lines", "atomic_path", "atomic_write_bytes", "atomic_write_json", "jsonable",
           "staging_dir", "remove_stale_temporaries"]


def _prefix(name: str) -> str:
    return f".tmp-{name}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its files
    return True


def remove_stale_temporaries(folder, name: str) -> list[str]:
    """Removes `.tmp-<name>.<pid>.*` files and folders in `folder` whose writer process no
    longer runs (a killed export or write); returns what was removed."""
    removed = []
    prefix = _prefix(name)
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        full = os.path.join(folder, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(full)
        removed.append(full)
    return removed


def staging_dir(folder, name: str) -> str:
    """A new temporary folder in `folder` for building `name` before a rename onto it;
    stale staging folders of dead writers of `name` are removed first."""
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, name)
    return tempfile.mkdtemp(prefix=_prefix(name) + f"{os.getpid()}.", dir=folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success renames it onto `path`.

    For writers that take a file name (e.g. `keras.Model.save`). On any error the
    temporary file is removed and the error propagates; `path` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    remove_stale_temporaries(folder, base)
    # Keep the extension last: some writers (Keras) pick the format from it.
    fd, tmp = tempfile.mkstemp(prefix=_prefix(base) + f"{os.getpid()}.",
                               suffix=os.path.splitext(base)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):
            # mkstemp creates 0600; give the file the mode a plain open() would have, so
            # outputs (exports, figures, logs) stay readable by other users and services.
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically, creating the parent folder if needed."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_json(path, payload: Any) -> None:
    """Writes `payload` as indented, key-sorted JSON (and a final newline) atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(value):
    """`value` with NumPy scalars as Python numbers, tuples as lists, dict keys as strings
    and NaN / inf as None (JSON has no non-finite numbers), recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def read_text_lines(path, error=UnicodeError) -> list[str]:
    """The lines of a UTF-8 text file (a leading byte-order mark is dropped), without
    their line ends.

    Raises:
        `error` (default UnicodeError, a ValueError; callers pass their own file-error
        class) naming the file, line and column of the first byte that is not UTF-8, and
        saying what to do.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as bad:
        line = raw.count(b"\n", 0, bad.start) + 1
        column = bad.start - (raw.rfind(b"\n", 0, bad.start) + 1) + 1
        raise error(
            f"{path}:{line}: expected UTF-8 text, received the byte "
            f"0x{raw[bad.start]:02x} at column {column}; save the file as UTF-8") from None


def read_class_names(path) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines at the end ignored).

    The one reader of `class_names.txt` files: WSOL metadata folders, training run
    folders and exports all keep their names in this format.

    Raises:
        ValueError naming the file when it cannot be read, holds no names or has an
        empty line between names (which would shift every later name).
    """
    path = os.fspath(path)
    try:
        lines = read_text_lines(path)
    except OSError as error:
        raise ValueError(f"class_names: cannot read {path}: {error.strerror}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if not lines or empty:
        raise ValueError(
            f"{path}: expected one non-empty class name per line, "
            f"received {'no names' if not lines else f'empty line(s) {empty[:5]}'}"
        )
    return tuple(line.strip() for line in lines)
