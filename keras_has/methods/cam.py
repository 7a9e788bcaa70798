"""`cam`: the GAP baseline (Zhou et al., CVPR 2016). Changes nothing."""
from keras_has.methods.base import Method


__all__ = ["Cam"]


class Cam(Method):
    name = "cam"
    title = "CAM"
