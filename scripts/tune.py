"""`keras-has tune` for a clone of the repository: see keras_has/cli/tune.py.

    python scripts/tune.py --flagfile=flags/quickstart.cfg --tune_method=acol \
        --tune_trials=4 --output_dir=outputs/tune_acol
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from keras_has.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run("tune", sys.argv[1:], program="tune.py"))
