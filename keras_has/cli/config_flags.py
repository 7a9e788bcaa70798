"""absl flags derived from the config dataclasses: the config is the one definition.

Every field of a config dataclass (and of the dataclasses nested in it, such as
`TrainConfig.data`) becomes one flag, named after the field (or after its
`metadata["flag"]`), with the field's default and the help text of the class
docstring's `Args:` entry (or `metadata["help"]`). The flag's parser follows the
field's type:

- `bool`, `int`, `float`, `str`: absl's boolean / integer / float / string flags;
- `X | None`: as `X`, and the word `none` (or an empty value) sets None;
- `tuple[int, ...]`, `tuple[float, ...]`, `tuple[str, ...]`: a comma-separated list;
- `Mapping[str, Any]`: a repeatable `key=value` flag (the value a Python literal, else
  a plain string).

A field without a default (e.g. `TrainConfig.model`) gets a flag without one; leaving
it out is an error that names the flag. `config_from_flags` builds the (validated)
dataclass back from the parsed flags, so a new config field is a new flag with no
other edit.
"""
from __future__ import annotations

import ast
import collections.abc
import dataclasses
import re
import typing
from typing import Any

from absl import flags

__all__ = ["define_config_flags", "config_from_flags", "config_flag_names", "field_help"]

_NONE_WORDS = ("none", "")


def field_help(cls) -> dict[str, str]:
    """`{field name: help}` from the `Args:` section of `cls`'s docstring (Google style;
    an entry may name several fields: `train_split, eval_split: ...`)."""
    doc = cls.__doc__ or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    base_indent = None
    text: list[str] = []

    def flush():
        for name in names:
            out[name] = re.sub(r"\s+", " ", " ".join(text)).replace("`", "").strip()

    entry = re.compile(r"^(\s+)([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*):\s*(.*)$")
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = entry.match(line)
        if match and (base_indent is None or indent == base_indent):
            flush()
            base_indent = indent
            names = [n.strip() for n in match.group(2).split(",")]
            text = [match.group(3)]
        elif base_indent is not None and indent > base_indent:
            text.append(line.strip())
        else:
            break
    flush()
    return out


class _ListParser(flags.ArgumentParser):
    """A comma-separated list of `kind` values, parsed to a tuple."""

    def __init__(self, kind):
        self.kind = kind

    def parse(self, argument):
        if isinstance(argument, (list, tuple)):
            items = list(argument)
        else:
            items = [v for v in str(argument).split(",") if v.strip() != ""]
        try:
            return tuple(self.kind(v) if isinstance(v, str) else v for v in items)
        except ValueError:
            expected = {int: "integers", float: "numbers"}.get(self.kind, "values")
            raise ValueError(f"expected a comma-separated list of {expected}, "
                             f"received {argument!r}") from None

    def flag_type(self):
        return f"comma-separated list of {self.kind.__name__}"


class _OptionalParser(flags.ArgumentParser):
    """`inner`'s values, or None for the word 'none' (or an empty value)."""

    def __init__(self, inner: flags.ArgumentParser):
        self.inner = inner

    def parse(self, argument):
        if argument is None or (isinstance(argument, str)
                                and argument.strip().lower() in _NONE_WORDS):
            return None
        return self.inner.parse(argument)

    def flag_type(self):
        return f"{self.inner.flag_type()} or none"


class _KeyValueParser(flags.ArgumentParser):
    """One `key=value` item (value: a Python literal, else the plain string)."""

    def parse(self, argument):
        if isinstance(argument, tuple):
            return argument
        key, sep, value = str(argument).partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, received {argument!r}")
        try:
            return key, ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return key, value

    def flag_type(self):
        return "key=value"


class _KeyValueSerializer(flags.ArgumentSerializer):
    def serialize(self, value):
        if isinstance(value, list):
            return " ".join(self.serialize(v) for v in value)
        return f"{value[0]}={value[1]!r}"


class _CsvSerializer(flags.ArgumentSerializer):
    def serialize(self, value):
        return "none" if value is None else ",".join(str(v) for v in value)


class _OptionalSerializer(flags.ArgumentSerializer):
    def serialize(self, value):
        return "none" if value is None else str(value)


def _unwrap_optional(tp):
    """`(X, True)` for `X | None`, `(tp, False)` otherwise."""
    args = typing.get_args(tp)
    if args and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return tp, False


def _scalar_parser(tp):
    if tp is int:
        return flags.IntegerParser()
    if tp is float:
        return flags.FloatParser()
    if tp is str:
        return flags.ArgumentParser()
    if tp is bool:
        return flags.BooleanParser()
    return None


@dataclasses.dataclass(frozen=True)
class _FlagField:
    """Where one flag's value goes: `path` of field names from the top config."""

    flag: str
    path: tuple[str, ...]
    kind: str  # "scalar", "list", "mapping"
    required: bool


def _flag_fields(config_cls, prefix=()) -> list[tuple[_FlagField, Any, Any, str]]:
    """`(field, type, default, help)` for every leaf field of `config_cls`."""
    hints = typing.get_type_hints(config_cls)
    helps = field_help(config_cls)
    out = []
    for field in dataclasses.fields(config_cls):
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_flag_fields(tp, prefix + (field.name,)))
            continue
        if field.default is not dataclasses.MISSING:
            default, required = field.default, False
        elif field.default_factory is not dataclasses.MISSING:
            default, required = field.default_factory(), False
        else:
            default, required = None, True
        help_text = field.metadata.get("help") or helps.get(field.name)
        if not help_text:
            raise ValueError(f"{config_cls.__name__}.{field.name}: expected help text "
                             "(an Args: entry in the class docstring or metadata['help']), "
                             "received none")
        origin = typing.get_origin(_unwrap_optional(tp)[0])
        kind = ("list" if origin is tuple else
                "mapping" if origin in (collections.abc.Mapping, dict) or tp is dict
                else "scalar")
        out.append((_FlagField(field.metadata.get("flag", field.name), prefix + (field.name,),
                               kind, required), tp, default, help_text))
    return out


def config_flag_names(config_cls) -> tuple[str, ...]:
    """The flag names `define_config_flags(config_cls)` defines, in field order."""
    return tuple(f.flag for f, _, _, _ in _flag_fields(config_cls))


def define_config_flags(config_cls, flag_values: flags.FlagValues = flags.FLAGS,
                        skip: tuple[str, ...] = ()) -> None:
    """Defines one flag per leaf field of the dataclass `config_cls` (see the module
    docstring); flags named in `skip` are left out (their fields keep their defaults).
    Flags this function defined before (another command module defining the same
    config's flags) are kept. Raises ValueError for a field type it cannot turn into a
    flag, a field without help text, or two fields with the same flag name."""
    seen = set()
    for field, tp, default, help_text in _flag_fields(config_cls):
        name = field.flag
        if name in skip:
            continue
        if name in flag_values and flag_values.find_module_defining_flag(name) == __name__:
            seen.add(name)  # defined before, from this config (several commands import it)
            continue
        if name in seen:
            raise ValueError(f"{config_cls.__name__}: expected one field per flag name, "
                             f"received two for --{name}")
        seen.add(name)
        inner, optional = _unwrap_optional(tp)
        if field.required:
            help_text += " (required)"
        if field.kind == "mapping":
            flags.DEFINE_multi(_KeyValueParser(), _KeyValueSerializer(), name,
                               [], help_text + " Given as key=value (a Python literal or a "
                               "plain string); repeatable.", flag_values=flag_values)
        elif field.kind == "list":
            (item,) = set(typing.get_args(inner)) - {Ellipsis}
            parser = _ListParser(item)
            if optional:
                parser = _OptionalParser(parser)
            flags.DEFINE(parser, name, default, help_text, flag_values=flag_values,
                         serializer=_CsvSerializer())
        else:
            parser = _scalar_parser(inner)
            if parser is None:
                raise ValueError(f"{config_cls.__name__}.{'.'.join(field.path)}: expected a "
                                 f"bool, int, float, str, tuple or mapping field, received {tp}")
            if inner is bool and not optional:
                flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
            elif optional or field.required:
                flags.DEFINE(_OptionalParser(parser), name, default, help_text,
                             flag_values=flag_values, serializer=_OptionalSerializer())
            else:
                flags.DEFINE(parser, name, default, help_text, flag_values=flag_values,
                             serializer=_OptionalSerializer())


def config_from_flags(config_cls, flag_values: flags.FlagValues = flags.FLAGS,
                      **overrides):
    """The validated `config_cls` built from parsed flags (and `overrides`, by top-level
    field name). Raises ValueError naming the flag for a required flag not given, and the
    config's own ValueError for invalid values."""
    nested: dict[str, Any] = {}
    for field, _, default, _ in _flag_fields(config_cls):
        flag = flag_values[field.flag] if field.flag in flag_values else None
        # A flag left at its default takes this config's default (two commands' configs
        # may share a flag name with different defaults when imported in one process).
        value = default if flag is None or flag.using_default_value else flag.value
        if field.kind == "mapping":
            value = dict(value or ())
        if field.required and value is None and field.path[0] not in overrides:
            raise ValueError(f"{field.flag}: expected a value (--{field.flag}), "
                             "received nothing")
        target = nested
        for key in field.path[:-1]:
            target = target.setdefault(key, {})
        target[field.path[-1]] = value
    nested.update(overrides)
    from keras_has.config import config_from_dict

    return config_from_dict(config_cls, nested)

