"""Former location of `keras_has.serve.export` (`export_saved_model`); kept importable."""
from keras_has.serve.export import *  # noqa: F401,F403
from keras_has.serve.export import __all__  # noqa: F401
