"""keras_has.cli: flags derived from the config, shipped flagfiles, the keras-has command."""
import dataclasses
import os
import pathlib
import subprocess
import sys
import typing

import pytest
from absl import flags

from keras_has.cli import config_flags, flagfiles
from keras_has.config import TrainConfig

from tests.helpers import REPO_ROOT  # noqa: E402


def _leaf_fields(cls, prefix=()):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_fields(hints[f.name], prefix + (f.name,))
        else:
            yield prefix + (f.name,), f.metadata.get("flag", f.name)


@dataclasses.dataclass(frozen=True)
class _Toy:
    """A toy config.

    Args:
      size: side of the image,
        in pixels.
      low, high: the two `bounds`.
      sizes: several sizes.
      limit: an optional limit.
      extra: keyword arguments.
      on: a switch.
    """

    size: int
    low: float = 0.0
    high: float = 1.0
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = 5
    extra: typing.Mapping[str, typing.Any] = dataclasses.field(
        default_factory=dict, metadata={"flag": "extra_arg"})
    on: bool = False


def _parse(cls, argv):
    fv = flags.FlagValues()
    config_flags.define_config_flags(cls, fv)
    fv(["prog"] + argv)
    return fv


def test_field_help_reads_the_args_section():
    helps = config_flags.field_help(_Toy)
    assert helps["size"] == "side of the image, in pixels."
    assert helps["low"] == helps["high"] == "the two bounds."
    assert set(helps) == {"size", "low", "high", "sizes", "limit", "extra", "on"}


def test_flags_parse_to_the_field_types():
    fv = _parse(_Toy, ["--size=7", "--sizes=3,4,5", "--limit=none", "--extra_arg=k=(1, 2)",
                       "--extra_arg=name=abc", "--on", "--high=2.5"])
    toy = config_flags.config_from_flags(_Toy, fv)
    assert toy == _Toy(size=7, low=0.0, high=2.5, sizes=(3, 4, 5), limit=None,
                       extra={"k": (1, 2), "name": "abc"}, on=True)
    defaults = config_flags.config_from_flags(_Toy, _parse(_Toy, ["--size=1"]))
    assert (defaults.sizes, defaults.limit, defaults.extra) == ((1, 2), 5, {})
    assert config_flags.config_from_flags(_Toy, _parse(_Toy, ["--size=1", "--sizes="])).sizes == ()


def test_missing_required_flag_is_named():
    with pytest.raises(ValueError, match=r"^size: expected a value \(--size\)"):
        config_flags.config_from_flags(_Toy, _parse(_Toy, []))


def test_bad_list_value_names_the_flag():
    with pytest.raises(flags.IllegalFlagValueError, match="--sizes=3,x"):
        _parse(_Toy, ["--size=1", "--sizes=3,x"])


def _command_flags(module):
    """Flags `keras_has.cli.<module>` defines, as a fresh process sees them: the
    config-derived ones and any of its own."""
    out = _python("import keras_has.cli.%s as m\n"
                  "from absl import flags\n"
                  "f = flags.FLAGS\n"
                  "print(sorted(x.name for x in f.get_flags_for_module('keras_has.cli.config_flags')))\n"
                  "print(sorted(x.name for x in f.get_flags_for_module(m.__name__)))" % module)
    derived, own = out.stdout.strip().splitlines()[-2:]
    return set(eval(derived)), set(eval(own))


def _python(code):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


@pytest.mark.parametrize("module, classes", [
    ("train", ("config:TrainConfig", "config.commands:TrainOptions")),
    ("compare", ("config:TrainConfig", "config:ComparisonConfig")),
    ("evaluate", ("config.commands:EvaluateConfig",)),
    ("export", ("config.commands:ExportConfig",)),
    ("predict", ("config.commands:PredictConfig",)),
])
def test_every_flag_of_a_command_is_a_config_field(module, classes):
    """A subcommand's flags are exactly its configs' leaf fields, none of its own."""
    import importlib

    expected = set()
    for spec in classes:
        mod, name = spec.split(":")
        cls = getattr(importlib.import_module(f"keras_has.{mod}"), name)
        names = config_flags.config_flag_names(cls)
        assert len(set(names)) == len(names)
        assert sorted(names) == sorted(flag for _, flag in _leaf_fields(cls))
        expected |= set(names)
    derived, own = _command_flags(module)
    aliases = {"evaluate": {"out_dir"}}.get(module, set())  # former names, kept working
    assert own == aliases and derived == expected  # (tests/cli/test_cli_errors.py uses --out_dir)


def test_train_flag_defaults_are_the_config_defaults():
    import keras_has.cli.train  # noqa: F401  (defines the flags)

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", "--model=tiny_gap", "--output_dir=/tmp/unused_run"])
    built = config_flags.config_from_flags(TrainConfig, flags.FLAGS)
    assert built == TrainConfig(model="tiny_gap", output_dir="/tmp/unused_run")


def test_shipped_flagfiles_resolve_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository
    path = flagfiles.resolve_flagfile("quickstart")
    assert path == flagfiles.resolve_flagfile("quickstart.cfg") == flagfiles.resolve_flagfile(
        "flags/quickstart.cfg")
    assert pathlib.Path(path).read_text() == (REPO_ROOT / "flags" / "quickstart.cfg").read_text()
    assert "common/has_mixed" in flagfiles.list_flagfiles()
    with pytest.raises(ValueError, match=r"flagfile: .*quickstart.*received 'no_such_flags'"):
        flagfiles.resolve_flagfile("no_such_flags")


def test_expand_flagfiles_nests_and_keeps_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "mine.cfg"
    own.write_text("# a comment\n--flagfile=flags/alexnet_has_mixed.cfg\n--epochs=3\n")
    argv = flagfiles.expand_flagfiles(["--seed=1", f"--flagfile={own}", "--epochs=4"])
    assert argv[0] == "--seed=1" and argv[-2:] == ["--epochs=3", "--epochs=4"]
    assert "--model=alexnet_gap" in argv and not any("flagfile" in a for a in argv)
    # alexnet_has_mixed nests common/paper_ilsvrc.cfg and common/has_mixed.cfg.
    assert "--grid_sizes=0,16,32,44,56" in argv


def _cli(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "keras_has.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def test_command_lists_subcommands_and_rejects_unknown(tmp_path):
    out = _cli("--help", cwd=tmp_path)
    assert out.returncode == 0 and "train" in out.stdout and "compare" in out.stdout
    out = _cli("trian", cwd=tmp_path)
    assert out.returncode == 2 and "received 'trian'" in out.stderr


def test_subcommand_help_and_bad_flag_from_another_directory(tmp_path):
    out = _cli("train", "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "keras-has train: train a GAP classifier" in out.stdout.replace("`", "")
    assert "--grid_sizes:" in out.stdout and "--[no]overwrite:" in out.stdout
    out = _cli("compare", "--flagfile=quickstart", "--hide_prob=2",
               f"--output_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 2
    assert "keras-has compare: invalid configuration: hide_prob:" in out.stderr
    assert not (tmp_path / "run").exists()
