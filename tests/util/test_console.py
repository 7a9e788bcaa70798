"""Console: quiet native stderr around TensorFlow's start-up, verbosity resolution."""
import io
import os

import pytest

from keras_has.util import console


def test_captured_native_stderr_hides_fd2_writes_and_restores(capfd):
    with console.captured_native_stderr():
        os.write(2, b"I0000 native info line\n")
    os.write(2, b"after the block\n")
    err = capfd.readouterr().err
    assert "native info line" not in err
    assert "after the block" in err


def test_captured_native_stderr_replays_on_error(capfd):
    with pytest.raises(ImportError, match="broken"):
        with console.captured_native_stderr():
            os.write(2, b"why the import failed\n")
            raise ImportError("broken")
    assert "why the import failed" in capfd.readouterr().err


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


@pytest.mark.parametrize("verbose, tty, expected", [
    (-1, True, 1), (-1, False, 2), (0, True, 0), (1, False, 1), (2, True, 2)])
def test_fit_verbosity_auto_is_a_bar_on_terminals_and_lines_elsewhere(verbose, tty, expected):
    assert console.fit_verbosity(verbose, _Stream(tty)) == expected
