"""GoogLeNet-GAP of the CAM paper (Zhou et al., CVPR 2016).

Reference: zhoubolei/CAM ``models/train_val_googlenetCAM.prototxt`` without its two
auxiliary classifiers: GoogLeNet (Inception v1) up to inception_4e with pool4 removed,
then ``CAM_conv`` 1024 3x3 pad 1 group 2 -> relu (= cam_features) -> global average
pooling -> dropout 0.5 -> classifier. Caffe semantics (pools round up; conv1 pads 3 on
every side). A 224x224 input gives 112 -> 56 -> 28 -> 14, a 14x14 CAM; with 1000 classes
the model has exactly 8,345,896 parameters.
"""
import keras

from keras_has.models.caffe_layers import CaffeMaxPooling2D, LocalResponseNormalization, conv2d
from keras_has.models.building import (
    LayerSeeds,
    check_dtype_policy,
    check_input_shape,
    check_num_classes,
    gap_classifier,
)

DEFAULT_INPUT_SHAPE = (224, 224, 3)

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), Szegedy et al. 2015, table 1.
INCEPTION_BLOCKS = (
    ("inception_3a", (64, 96, 128, 16, 32, 32)),
    ("inception_3b", (128, 128, 192, 32, 96, 64)),
    ("pool3", None),
    ("inception_4a", (192, 96, 208, 16, 48, 64)),
    ("inception_4b", (160, 112, 224, 24, 64, 64)),
    ("inception_4c", (128, 128, 256, 24, 64, 64)),
    ("inception_4d", (112, 144, 288, 32, 64, 64)),
    ("inception_4e", (256, 160, 320, 32, 128, 128)),
)


__all__ = ["DEFAULT_INPUT_SHAPE", "INCEPTION_BLOCKS", "googlenet_gap"]


def googlenet_gap(
    num_classes,
    input_shape=None,
    batch_norm=False,
    cam_filters=1024,
    cam_groups=2,
    dropout=0.5,
    dtype_policy=None,
    seed=None,
    name="googlenet_gap",
):
    """Builds the CAM paper's GoogLeNet-GAP as a functional ``keras.Model``.

    Args:
        num_classes: number of classes ``K``.
        input_shape: ``(H, W, 3)``; default ``(224, 224, 3)``; H, W may be None.
        batch_norm: if True, every conv is followed by BatchNormalization (conv without
            bias) and the two LRN layers are dropped.
        cam_filters: filters of the CAM conv (reference 1024).
        cam_groups: groups of the CAM conv (reference 2).
        dropout: dropout rate after global average pooling (reference 0.5).
        dtype_policy: None (global Keras policy) or a policy name, e.g. "mixed_bfloat16".
        seed: None (Keras' global seeding) or an int fixing every initialiser and dropout.
        name: model name.

    Returns:
        A built model: input ``[B, H, W, 3]`` normalised images, output float32 logits
        ``[B, K]``; layer ``cam_features`` outputs ``[B, h, w, cam_filters]``.
    """
    check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, DEFAULT_INPUT_SHAPE, name, min_size=17)
    dtype_policy = check_dtype_policy(dtype_policy)
    seeds = LayerSeeds(seed)
    if cam_groups not in (1, 2) or cam_filters % cam_groups:
        raise ValueError(
            f"{name}: `cam_groups` must be 1 or 2 and divide `cam_filters` ({cam_filters}), "
            f"received {cam_groups!r}"
        )

    def conv(x, filters, kernel, conv_name, strides=1, padding="same", groups=1, act_name=None):
        x = conv2d(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            groups=groups,
            use_bias=not batch_norm,
            kernel_initializer=seeds.kernel(),
            name=conv_name,
            dtype=dtype_policy,
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{conv_name}_bn", dtype=dtype_policy)(x)
        return keras.layers.ReLU(name=act_name or f"{conv_name}_relu", dtype=dtype_policy)(x)

    def lrn(x, norm_name):
        if batch_norm:
            return x
        return LocalResponseNormalization(5, 1e-4, 0.75, name=norm_name, dtype=dtype_policy)(x)

    def inception(x, block, widths):
        n1, r3, n3, r5, n5, proj = widths
        b1 = conv(x, n1, 1, f"{block}_1x1")
        b3 = conv(conv(x, r3, 1, f"{block}_3x3_reduce"), n3, 3, f"{block}_3x3")
        b5 = conv(conv(x, r5, 1, f"{block}_5x5_reduce"), n5, 5, f"{block}_5x5")
        bp = keras.layers.MaxPooling2D(3, 1, padding="same", name=f"{block}_pool", dtype=dtype_policy)(x)
        bp = conv(bp, proj, 1, f"{block}_pool_proj")
        return keras.layers.Concatenate(name=f"{block}_output", dtype=dtype_policy)([b1, b3, b5, bp])

    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad", dtype=dtype_policy)(inputs)
    x = conv(x, 64, 7, "conv1", strides=2, padding="valid")
    x = CaffeMaxPooling2D(3, 2, name="pool1", dtype=dtype_policy)(x)
    x = lrn(x, "norm1")
    x = conv(x, 64, 1, "conv2_reduce")
    x = conv(x, 192, 3, "conv2")
    x = lrn(x, "norm2")
    x = CaffeMaxPooling2D(3, 2, name="pool2", dtype=dtype_policy)(x)
    for block, widths in INCEPTION_BLOCKS:
        if widths is None:
            x = CaffeMaxPooling2D(3, 2, name=block, dtype=dtype_policy)(x)
        else:
            x = inception(x, block, widths)
    features = conv(x, cam_filters, 3, "cam_conv", groups=cam_groups, act_name="cam_features")
    logits = gap_classifier(features, num_classes, dropout, dtype_policy, seeds)
    return keras.Model(inputs, logits, name=name)
