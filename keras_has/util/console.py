"""What a run prints: quiet TensorFlow start-up and one line per training epoch.

TensorFlow writes C++ INFO lines ("oneDNN custom operations are on", "Could not find
cuda drivers", "failed call to cuInit") straight to the process's stderr while it is
imported and while it finds its devices, before its own log level applies, so
`TF_CPP_MIN_LOG_LEVEL` cannot hide them. `quiet_tensorflow()` imports TensorFlow and
lists its devices with file descriptor 2 pointed at a temporary file, and replays that
file if the import fails, so nothing useful is ever lost; afterwards TensorFlow's and
absl's Python loggers are set to warnings.

`fit_verbosity` picks a progress bar for terminals and one line per epoch
(`keras_has.train.callbacks.EpochLine`) for logs and pipes. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile

__all__ = ["captured_native_stderr", "quiet_tensorflow", "fit_verbosity",
           "disable_dataset_progress_bars"]


@contextlib.contextmanager
def captured_native_stderr():
    """Points file descriptor 2 at a temporary file for the duration of the block.

    Catches what C/C++ code writes to stderr (Python's `sys.stderr` writes through the
    same descriptor). If the block raises, the captured text is written back to stderr
    before the exception propagates.
    """
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            captured = sink.read()
            if captured:
                os.write(2, captured)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow() -> None:
    """Imports TensorFlow without its start-up INFO lines and sets its loggers to warnings.

    Call it before anything imports TensorFlow (scripts do, unless asked for verbose
    logs); later calls only reset the log levels.
    """
    # 3 also hides C++ ERROR lines such as "oneDNN supports DT_BOOL only on platforms
    # with AVX-512. Falling back ..." that report no failure; real failures still raise
    # Python exceptions with their messages. A value the user set is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with captured_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    tf.get_logger().setLevel("ERROR")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)


def fit_verbosity(verbose: int, stream=None) -> int:
    """Resolves a `verbose` setting: -1 (auto) is 1 (progress bar) when `stream`
    (default stdout) is a terminal and 2 (one line per epoch) otherwise."""
    if verbose != -1:
        return verbose
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def disable_dataset_progress_bars() -> None:
    """Turns off TFDS's progress bars (dataset generation, shuffling): in a log or a pipe
    they are thousands of carriage-return updates. TFDS's one-line messages remain."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
