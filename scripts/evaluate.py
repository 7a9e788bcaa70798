"""`keras-has evaluate` for a clone of the repository: see keras_has/cli/evaluate.py.

    python scripts/evaluate.py --help
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

from keras_has.cli import evaluate  # noqa: E402

if __name__ == "__main__":
    app.run(evaluate.main)
