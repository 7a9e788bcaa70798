"""Value checks shared by the config dataclasses, and their JSON round trip.

Pure Python: no TensorFlow, nothing else of the product. Every check raises
`ValueError("<flag>: expected <what>, received <value>")`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

__all__ = ["fail", "is_int", "is_number", "positive_int", "looks_like_path",
           "config_to_dict", "config_from_dict"]


def fail(flag: str, value: Any, expected: str) -> None:
    raise ValueError(f"{flag}: expected {expected}, received {value!r}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def positive_int(flag: str, value: Any) -> None:
    if not is_int(value) or value < 1:
        fail(flag, value, "an integer >= 1")


def looks_like_path(source: str) -> bool:
    """True when `source` is meant as a filesystem path rather than a dataset name."""
    return (os.sep in source or "/" in source or source.startswith((".", "~")))



def config_to_dict(config, version: int) -> dict:
    """`config` (a config dataclass) as a JSON-serialisable dict with a `version` key."""
    out = dataclasses.asdict(config)
    out["version"] = version
    return out


def config_from_dict(cls, values: Mapping[str, Any], version: int | None = None,
                     where: str | None = None):
    """The config dataclass `cls` from `config_to_dict`'s dict (a nested dict becomes
    the nested dataclass its field's type names; a JSON list becomes the tuple a
    `tuple[...]` field holds). Validates like the constructor; an unknown key or another
    `version` fails naming it (`where`: the name errors give the dict, default the
    class name; a nested group is named by its field)."""
    import typing

    where = where or cls.__name__
    if not isinstance(values, Mapping):
        fail(where, values, "a mapping")
    values = dict(values)
    if version is not None:
        got = values.pop("version", version)
        if got != version:
            fail("version", got, f"config version {version}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        fail(where, unknown, f"keys among {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            value = value if isinstance(value, tp) else config_from_dict(tp, value, where=key)
        elif isinstance(value, list) and (typing.get_origin(tp) is tuple or tuple in [
                typing.get_origin(a) for a in typing.get_args(tp)]):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)
