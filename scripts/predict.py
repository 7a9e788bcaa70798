"""`keras-has predict` for a clone of the repository: see keras_has/cli/predict.py.

    python scripts/predict.py --help
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

from keras_has.cli import predict  # noqa: E402

if __name__ == "__main__":
    app.run(predict.main)
