"""`cam`: the GAP baseline (Zhou et al., CVPR 2016). Changes nothing."""
from keras_has.methods.base import Method


class Cam(Method):
    name = "cam"
    title = "CAM"
