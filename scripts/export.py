"""`keras-has export` for a clone of the repository: see keras_has/cli/export.py.

    python scripts/export.py --help
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_has.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("export", sys.argv[1:], program="export.py"))
