"""Former location of `keras_has.localize.metrics` (`LocalizationEvaluator`); kept
importable."""
from keras_has.localize.metrics import *  # noqa: F401,F403
from keras_has.localize.metrics import __all__  # noqa: F401
