"""`spg`: Self-produced Guidance (Zhang et al., ECCV 2018).

Side branches on the model's last feature map `F` (`cam_features`): `b1` and `b2`
(conv 3x3 + ReLU each, then a shared conv 3x3 + ReLU + 1x1 conv to one channel) and
`c` (conv 3x3 + ReLU + 1x1 conv to one channel). During training, the CAM of the
label (the model's own `classifier` applied per pixel), min-max normalised and
upsampled to the image, gives guidance masks at thresholds pair 1 for `b2`;
`sigmoid(b2)` gives masks at pair 2 for `b1`; `(sigmoid(b1) + sigmoid(b2)) / 2` gives
masks at pair 3 for `c` (`SpgHead`, wsolevaluation's three losses). The logits and
the CAM are the baseline's (`cam_features . classifier`).
"""
import keras

from keras_has.methods.base import Method
from keras_has.methods.heads import feature_layer_info, initializer
from keras_has.methods.layers import SpgHead


__all__ = ["Spg"]


class Spg(Method):
    name = "spg"
    title = "SPG"
    hyperparameters = ("spg_threshold_1h", "spg_threshold_1l", "spg_threshold_2h",
                       "spg_threshold_2l", "spg_threshold_3h", "spg_threshold_3l")

    def thresholds(self):
        c = self.config
        return ((c.spg_threshold_1h, c.spg_threshold_1l), (c.spg_threshold_2h, c.spg_threshold_2l),
                (c.spg_threshold_3h, c.spg_threshold_3l))

    def build(self, model, seed=None, **info):
        features, channels, policy, _ = feature_layer_info(model, self.name)
        size = tuple(model.inputs[0].shape[1:3])
        if None in size:
            raise ValueError(f"method 'spg': the model input needs a static size (it upsamples "
                             f"its guidance maps to it), received {size}")

        def conv(filters, kernel, name, offset, relu=True):
            layers = [keras.layers.Conv2D(filters, kernel, padding="same", name=name,
                                          kernel_initializer=initializer(seed, offset),
                                          dtype=policy)]
            if relu:
                layers.append(keras.layers.ReLU(name=f"{name}_relu", dtype=policy))
            return layers

        def apply(layers, x):
            for layer in layers:
                x = layer(x)
            return x

        shared = conv(channels, 3, "spg_b_shared_conv", 11) + conv(1, 1, "spg_b_shared_out", 12,
                                                                    relu=False)
        b1 = apply(shared, apply(conv(channels, 3, "spg_b1_conv", 13), features))
        b2 = apply(shared, apply(conv(channels, 3, "spg_b2_conv", 14), features))
        c = apply(conv(channels, 3, "spg_c_conv", 15) + conv(1, 1, "spg_c_out", 16, relu=False),
                  features)
        class_maps = model.get_layer("classifier")(features)
        logits = SpgHead(thresholds=self.thresholds(), image_size=size, method=self.name,
                         cam_branches=[["cam_features", "classifier"]], cam_fusion="single",
                         name="spg_head")([model.outputs[0], class_maps, b1, b2, c])
        return keras.Model(model.inputs, logits, name=model.name)
