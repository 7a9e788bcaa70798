"""What every subcommand shares: quiet start-up, one-line expected errors."""
from __future__ import annotations

import sys
import traceback

from absl import app, flags

from keras_has.util import console

__all__ = ["command_name", "quiet_unless_verbosity", "run_reporting_errors",
           "debug_requested", "check_against_registries", "run_command", "expected_errors", "one_line"]


def command_name(argv) -> str:
    """How the user called the command, for messages: `train.py`, `keras-has train`."""
    return argv[0].rsplit("/", 1)[-1] if argv else "keras-has"


def debug_requested(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
    """True when --verbosity was given at 1 (debug) or more."""
    return flag_values["verbosity"].present and flag_values.verbosity >= 1


def quiet_unless_verbosity(flag_values: flags.FlagValues = flags.FLAGS,
                           verbose: int = -1) -> None:
    """TensorFlow's start-up INFO lines and absl INFO logs off, unless --verbosity is
    given (e.g. --verbosity=0 brings back INFO, 1 debug); TFDS progress bars off unless
    progress bars were asked for (a terminal, or `verbose` 1)."""
    if not flag_values["verbosity"].present:
        console.quiet_tensorflow()
    if console.fit_verbosity(verbose) != 1:
        console.disable_dataset_progress_bars()


INTERRUPTED = 130  # exit status after Ctrl-C (128 + SIGINT), as shells report it


def expected_errors() -> tuple:
    """The exception types reported in one line: bad data or settings found while
    running (also inside a TensorFlow graph), a run folder in use, a missing file, an
    output that exists."""
    from keras_has.train.run_folder import RunFolderBusy

    types = [ValueError, RunFolderBusy, FileNotFoundError, FileExistsError, PermissionError,
             NotADirectoryError]
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        types.append(tf.errors.InvalidArgumentError)
    return tuple(types)


def one_line(error: BaseException) -> str:
    """The informative line of an error's message (TensorFlow's span several)."""
    reasons = {PermissionError: "permission denied",
               NotADirectoryError: "a file stands where a folder is needed",
               FileExistsError: "a file stands where a folder is needed"}
    reason = next((text for kind, text in reasons.items() if isinstance(error, kind)), None)
    if reason is not None and getattr(error, "filename", None):  # raised by the OS
        return (f"cannot write {error.filename}: {reason}; choose an output folder you can "
                "write to")
    noise = ("Graph execution error", "Detected at node", "[[", "<stack traces")
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    return lines[0] if lines else type(error).__name__


def run_reporting_errors(command: str, fn, *args, flag_values=flags.FLAGS, **kwargs):
    """`fn(*args, **kwargs)`, or None after one line on stderr for an expected error
    (`expected_errors`); the traceback too under --verbosity=1 or more."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt as e:  # Ctrl-C: what was finished is kept
        if debug_requested(flag_values):
            traceback.print_exc()
        epoch = getattr(e, "epoch", None)
        where = f" at epoch {epoch}" if epoch is not None else ""
        print(f"{command}: interrupted{where}; rerun the same command to resume",
              file=sys.stderr)
        return INTERRUPTED
    except expected_errors() as e:
        if debug_requested(flag_values):
            traceback.print_exc()
        print(f"{command}: {one_line(e)}", file=sys.stderr)
        return None


def check_against_registries(config) -> None:
    """The checks of `config` that need the product's registries (known model, method,
    dataset names; see `keras_has.train.checks`); ValueError naming the flag."""
    from keras_has.config import ComparisonConfig, TrainConfig, TuneConfig
    from keras_has.config.temporal import TemporalConfig

    if isinstance(config, TrainConfig):
        from keras_has.train.checks import check_train_config

        check_train_config(config)
    elif isinstance(config, ComparisonConfig):
        from keras_has.train.checks import check_method_names

        check_method_names(config.methods)
    elif isinstance(config, TuneConfig):
        from keras_has.train.checks import check_method_names

        check_method_names((config.tune_method,), "tune_method")
    elif isinstance(config, TemporalConfig):
        from keras_has.temporal.training import check_temporal_config

        check_temporal_config(config)


def run_command(argv, config_classes, body, prepare=None,
                flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """The frame of every subcommand's `main`: no stray arguments, quiet start-up, the
    configs built from the flags (`config_classes`, each by
    `keras_has.cli.config_flags.config_from_flags`) and `prepare(*configs)` run (checks
    and loading that must fail before any work; its result is passed on), a bad value
    reported as one line `<command>: invalid configuration: ...` with status 2; then
    `body(command, *configs, prepared)` gives the status, with expected errors while
    running reported in one line (`run_reporting_errors`, status 2)."""
    from keras_has.cli.config_flags import config_from_flags

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    command = command_name(argv)
    verbose = flag_values["verbose"].value if "verbose" in flag_values else -1
    quiet_unless_verbosity(flag_values, verbose)
    try:
        configs = [config_from_flags(cls, flag_values) for cls in config_classes]
        for config in configs:
            check_against_registries(config)
        prepared = prepare(*configs) if prepare is not None else None
    except ValueError as e:
        if debug_requested(flag_values):
            traceback.print_exc()
        print(f"{command}: invalid configuration: {e}", file=sys.stderr)
        return 2
    status = run_reporting_errors(command, body, command, *configs, prepared,
                                  flag_values=flag_values)
    return 2 if status is None else status
