"""Expected errors of the commands: one line on stderr, exit status 2.

An expected error is bad input found while running: a flag value, a missing or
unreadable file, bad data, a folder in use. It is reported as `<command>: <message>` on
one line; the traceback follows only under `--verbosity=1` or more. Anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import sys
import traceback

from absl import flags

__all__ = ["USAGE_ERROR", "command_name", "quiet_unless_verbosity", "debug_requested",
           "expected_errors", "report", "run_reporting_errors", "run_command"]

USAGE_ERROR = 2  # the exit status of a rejected run


def command_name(argv) -> str:
    """How the user called the command, for messages: `evaluate.py`, `keras-has evaluate`."""
    return argv[0].rsplit("/", 1)[-1] if argv else "keras-has"


def quiet_unless_verbosity(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """TensorFlow's start-up INFO lines off, unless --verbosity is given; TFDS progress
    bars off unless stdout is a terminal."""
    from keras_has import console

    if not flag_values["verbosity"].present:
        console.quiet_tensorflow()
    if console.fit_verbosity(-1) != 1:
        console.disable_dataset_progress_bars()


def debug_requested(flag_values: flags.FlagValues = flags.FLAGS) -> bool:
    """True when --verbosity was given at 1 (debug) or more."""
    try:
        return flag_values["verbosity"].present and flag_values.verbosity >= 1
    except KeyError:
        return False


def expected_errors() -> tuple:
    """The exception types reported in one line."""
    from keras_has.run_folder import RunFolderBusy

    types = [ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
             RunFolderBusy]
    tf = sys.modules.get("tensorflow")
    if tf is not None:  # bad data found inside a TensorFlow graph
        types.append(tf.errors.InvalidArgumentError)
    return tuple(types)


def _one_line(error: BaseException) -> str:
    """The informative line of an error message (TensorFlow's span several)."""
    noise = ("Graph execution error", "Detected at node", "[[", "<stack traces")
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    return lines[0] if lines else type(error).__name__


def report(command: str, error: BaseException,
           flag_values: flags.FlagValues = flags.FLAGS) -> int:
    """Prints `error` as one line (with the traceback under --verbosity>=1); returns 2."""
    if debug_requested(flag_values):
        traceback.print_exception(type(error), error, error.__traceback__)
    print(f"{command}: {_one_line(error)}", file=sys.stderr)
    return USAGE_ERROR


def run_reporting_errors(command: str, fn, *args, flag_values=flags.FLAGS, **kwargs):
    """`(True, fn(*args, **kwargs))`, or `(False, 2)` after `report` for an expected
    error."""
    try:
        return True, fn(*args, **kwargs)
    except expected_errors() as error:
        return False, report(command, error, flag_values)


def run_command(argv, job, done, flag_values=flags.FLAGS, takes_arguments=False) -> int:
    """The body of a command's `main(argv)`: quiet start-up, `job()` (or, with
    `takes_arguments`, `job(argv[1:])`) with expected errors reported in one line, then
    `done(result)` -> the exit status. Returns 2 for a rejected run."""
    command = command_name(argv)
    arguments = list(argv[1:])
    if arguments and not takes_arguments:
        print(f"{command}: unexpected arguments: {arguments}", file=sys.stderr)
        return USAGE_ERROR
    quiet_unless_verbosity(flag_values)
    ok, value = run_reporting_errors(command, job, *([arguments] if takes_arguments else []),
                                     flag_values=flag_values)
    return done(value) if ok else value
