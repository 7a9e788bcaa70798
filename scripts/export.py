"""`keras-has export` for a clone of the repository: see keras_has/cli/export.py.

    python scripts/export.py --help
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402

from keras_has.cli import export  # noqa: E402

if __name__ == "__main__":
    app.run(export.main)
