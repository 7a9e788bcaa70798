"""`keras-has train` for a clone of the repository: see keras_has/cli/train.py.

    python scripts/train.py --flagfile=flags/quickstart.cfg --output_dir=outputs/quickstart
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_has.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("train", sys.argv[1:], program="train.py"))
