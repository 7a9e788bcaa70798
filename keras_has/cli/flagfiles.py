"""Flagfiles found by name: the ones shipped with the package, or any file path.

`--flagfile=quickstart` (or `quickstart.cfg`, or `flags/quickstart.cfg`) names a flagfile
installed with keras-has (`keras_has/flagfiles/`, the repository's `flags/` folder); any
other value is a file path. `expand_flagfiles` replaces every `--flagfile` argument by
the flags in its file, in place and recursively (nested `--flagfile` lines are resolved
the same way, so a shipped flagfile works from any directory), so flags given after a
flagfile override it, as with absl's own `--flagfile`.
"""
from __future__ import annotations

import os
import pathlib

__all__ = ["FLAGFILE_DIR", "resolve_flagfile", "list_flagfiles", "expand_flagfiles"]

FLAGFILE_DIR = pathlib.Path(__file__).resolve().parent.parent / "flagfiles"
_MAX_DEPTH = 20


def list_flagfiles() -> tuple[str, ...]:
    """Names of the shipped flagfiles (without `.cfg`), e.g. `quickstart`."""
    if not FLAGFILE_DIR.is_dir():
        return ()
    return tuple(sorted(str(p.relative_to(FLAGFILE_DIR).with_suffix(""))
                        for p in FLAGFILE_DIR.rglob("*.cfg")))


def resolve_flagfile(name: str) -> str:
    """The path of flagfile `name`: an existing file path as it is, else a shipped
    flagfile (`quickstart`, `quickstart.cfg`, `flags/quickstart.cfg`,
    `common/has_mixed`). Raises ValueError naming it and the shipped ones."""
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        return path
    stem = name[len("flags/"):] if name.startswith("flags/") else name
    for candidate in (FLAGFILE_DIR / stem, FLAGFILE_DIR / f"{stem}.cfg"):
        if candidate.is_file():
            return str(candidate)
    raise ValueError(f"flagfile: expected a file path or the name of a shipped flagfile "
                     f"({', '.join(list_flagfiles())}), received {name!r}")


def _read(path: str, depth: int) -> list[str]:
    if depth > _MAX_DEPTH:
        raise ValueError(f"flagfile: expected nesting of at most {_MAX_DEPTH} levels, "
                         f"received deeper nesting at {path!r}")
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", "//")):
                continue
            out.extend(_expand_one(line, depth))
    return out


def _flagfile_value(arg: str) -> str | None:
    for prefix in ("--flagfile=", "-flagfile="):
        if arg.startswith(prefix):
            return arg[len(prefix):]
    return None


def _expand_one(arg: str, depth: int) -> list[str]:
    value = _flagfile_value(arg)
    if value is None:
        return [arg]
    return _read(resolve_flagfile(value), depth + 1)


def expand_flagfiles(argv: list[str]) -> list[str]:
    """`argv` with every `--flagfile=NAME` (and `--flagfile NAME`) replaced by the flags
    of its file, recursively. Lines of a flagfile are single flags; `#` starts a comment
    line."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--flagfile", "-flagfile") and i + 1 < len(args):
            out.extend(_read(resolve_flagfile(args[i + 1]), 1))
            i += 2
            continue
        if arg == "--":
            out.extend(args[i:])
            break
        out.extend(_expand_one(arg, 0))
        i += 1
    return out
