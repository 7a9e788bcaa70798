"""`keras-has compare-temporal` for a clone of the repository: see keras_has/cli/compare_temporal.py.

    python scripts/compare_temporal.py --flagfile=flags/temporal_quickstart.cfg --output_dir=outputs/temporal
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_has.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("compare-temporal", sys.argv[1:], program="compare_temporal.py"))
