"""`acol`: Adversarial Complementary Learning (Zhang et al., CVPR 2018).

Built on the model's last feature map `F` (`cam_features`), after a 3x3 stride-1
average pooling: branch A is conv 3x3 (C filters) + ReLU (`acol_a_features`) and a
per-pixel `classifier` Dense (1x1 conv to K classes), whose global average is the
model's logits; `AcolErase` zeroes `F` where A's min-max normalised CAM of the label
(the top-1 class at inference) is >= `acol_threshold`, and branch B (same shape,
`acol_b_features`, `classifier_b`) classifies the erased features. Loss: the
cross-entropy of both branches. CAM: per class, the maximum of the two branches'
min-max normalised CAMs (`AcolHead` records it for `keras_has.localize.cams`).
"""
import keras

from keras_has.methods.base import Method
from keras_has.methods.heads import feature_layer_info, initializer
from keras_has.methods.layers import AcolErase, AcolHead


__all__ = ["Acol"]


class Acol(Method):
    name = "acol"
    title = "ACoL"
    hyperparameters = ("acol_threshold",)

    def build(self, model, seed=None, **info):
        features, channels, policy, num_classes = feature_layer_info(model, self.name)
        smooth = keras.layers.AveragePooling2D(3, strides=1, padding="same",
                                               name="acol_smooth", dtype=policy)(features)

        def branch(x, tag, classifier, offset):
            x = keras.layers.Conv2D(channels, 3, padding="same", name=f"acol_{tag}_conv",
                                    kernel_initializer=initializer(seed, offset),
                                    dtype=policy)(x)
            x = keras.layers.ReLU(name=f"acol_{tag}_features", dtype=policy)(x)
            maps = keras.layers.Dense(num_classes, name=classifier, dtype="float32",
                                      kernel_initializer=initializer(seed, offset + 1))(x)
            logits = keras.layers.GlobalAveragePooling2D(name=f"acol_{tag}_gap",
                                                         dtype="float32")(maps)
            return maps, logits

        maps_a, logits_a = branch(smooth, "a", "classifier", 1)
        erased = AcolErase(self.config.acol_threshold, name="acol_erase", dtype=policy)(
            [smooth, maps_a])
        _, logits_b = branch(erased, "b", "classifier_b", 3)
        logits = AcolHead(method=self.name,
                          cam_branches=[["acol_a_features", "classifier"],
                                        ["acol_b_features", "classifier_b"]],
                          cam_fusion="max_normalized", name="acol_head")([logits_a, logits_b])
        return keras.Model(model.inputs, logits, name=model.name)
