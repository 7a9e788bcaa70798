"""Former location of `keras_has.localize.boxes` (boxes from CAMs); kept importable."""
from keras_has.localize.boxes import *  # noqa: F401,F403
from keras_has.localize.boxes import __all__  # noqa: F401
