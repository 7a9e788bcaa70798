"""The `keras-has` command: one subcommand per job, each a module of this package.

    keras-has train    --flagfile=quickstart --output_dir=runs/quick
    keras-has compare  --flagfile=quickstart --output_dir=outputs/quickstart
    keras-has evaluate | export | predict | ...   (keras-has <subcommand> --help)

A subcommand module defines its absl flags when imported and a `main(argv) -> int`;
`run` imports only the chosen one (so only its flags exist), expands `--flagfile`
arguments (shipped flagfiles are found by name, `keras_has.cli.flagfiles`) and runs it
under `absl.app`. The scripts under `scripts/` are the same entry points for a clone.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

__all__ = ["SUBCOMMANDS", "INFERENCE_SUBCOMMANDS", "run", "main"]

# subcommand -> (module of keras_has.cli, one line of help)
SUBCOMMANDS = {
    "train": ("train", "train a model (Hide-and-Seek or the GAP baseline)"),
    "compare": ("compare", "train and evaluate the baseline and Hide-and-Seek side by side"),
    "tune": ("tune", "search a WSOL method's hyperparameters on the validation boxes"),
    "evaluate": ("evaluate", "localization metrics of a trained model on a split"),
    "export": ("export", "export a trained model as a SavedModel for serving"),
    "predict": ("predict", "classes, boxes and CAM overlays for image files"),
    "train-temporal": ("train_temporal", "train a temporal GAP model on video features"),
    "compare-temporal": ("compare_temporal", "temporal baseline vs Hide-and-Seek in time"),
}

# Subcommands that only run a trained model: their process gets
# `keras_has.util.runtime.prefer_inference_threading` before TensorFlow starts.
INFERENCE_SUBCOMMANDS = ("evaluate", "predict")


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: keras-has <subcommand> [--flagfile=NAME] [--flag=value ...]", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()
              if _available(name)]
    lines += ["", "keras-has <subcommand> --help lists its flags; shipped flagfiles: "
              "keras-has flagfiles"]
    return "\n".join(lines)


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"keras_has.cli.{SUBCOMMANDS[name][0]}") is not None


def run(subcommand: str, args: list[str], program: str | None = None) -> int:
    """Runs `subcommand` with command-line `args` (flags, without the program name);
    returns its exit status. `program` names it in messages (default `keras-has <sub>`)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from absl import app, flags

    from keras_has.cli.flagfiles import expand_flagfiles

    program = program or f"keras-has {subcommand}"
    if subcommand not in SUBCOMMANDS or not _available(subcommand):
        print(f"keras-has: expected a subcommand among {[n for n in SUBCOMMANDS if _available(n)]}, "
              f"received {subcommand!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if subcommand in INFERENCE_SUBCOMMANDS:
        from keras_has.util import runtime

        runtime.prefer_inference_threading()
    try:
        args = expand_flagfiles(args)
    except (ValueError, OSError) as e:
        print(f"{program}: {e}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"keras_has.cli.{SUBCOMMANDS[subcommand][0]}")
    # --help lists the flags of the main module: adopt the subcommand's flags there.
    fv = flags.FLAGS
    main_module = sys.argv[0]
    for owner in (module.__name__, "keras_has.cli.config_flags"):
        for flag in fv.get_flags_for_module(owner):
            fv.register_key_flag_for_module(main_module, flag)
    if "__main__" in sys.modules:  # absl's --help prints the main module's docstring
        sys.modules["__main__"].__doc__ = module.__doc__
    status = 0

    def _main(argv):
        nonlocal status
        status = module.main(argv) or 0
        return status

    try:
        app.run(_main, argv=[program] + list(args))
    except SystemExit as e:  # app.run exits with main's status
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 1 and any(a in _HELP_FLAGS for a in args):
            return 0  # absl exits 1 after printing --help; a command-line tool exits 0
        return code
    return status


_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `keras-has` console command."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if len(argv) >= 2 else 2
    if argv[1] == "flagfiles":
        from keras_has.cli.flagfiles import FLAGFILE_DIR, list_flagfiles

        print(f"shipped flagfiles ({FLAGFILE_DIR}):")
        print("\n".join(f"  {name}" for name in list_flagfiles()))
        return 0
    return run(argv[1], argv[2:])


if __name__ == "__main__":
    sys.exit(main())
