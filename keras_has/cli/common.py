"""What every subcommand shares: quiet start-up, one-line expected errors."""
from __future__ import annotations

import sys
import traceback

from absl import flags

from keras_has import console  # imports no TensorFlow

__all__ = ["command_name", "quiet_unless_verbosity", "run_reporting_errors",
           "debug_requested"]


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


def run_reporting_errors(command: str, fn, *args, flag_values=flags.FLAGS, **kwargs):
    """`fn(*args, **kwargs)`, or None after one line on stderr for an expected error (bad
    data or settings found while running, a run folder in use, a missing file); the
    traceback too under --verbosity=1 or more."""
    from keras_has.run_folder import RunFolderBusy

    try:
        return fn(*args, **kwargs)
    except (ValueError, RunFolderBusy, FileNotFoundError) as e:
        if debug_requested(flag_values):
            traceback.print_exc()
        print(f"{command}: {e}", file=sys.stderr)
        return None
