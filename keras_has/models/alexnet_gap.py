"""AlexNet-GAP of the CAM paper (Zhou et al., CVPR 2016).

Reference: zhoubolei/CAM ``models/deploy_alexnetplusCAM_imagenet.prototxt``. Layer by
layer (Caffe semantics; pools round up):

    conv1 96 11x11/4 -> relu -> pool1 3/2 -> norm1 (LRN 5, 1e-4, 0.75)
    conv2 256 5x5 pad 2 group 2 -> relu -> pool2 3/2 -> norm2
    conv3 384 3x3 pad 1 -> relu
    conv4 384 3x3 pad 1 group 2 -> relu
    conv5 384 3x3 pad 1 group 2 -> relu -> pool5 3/1
    conv6 512 3x3 pad 1 group 2 -> relu
    conv7 512 3x3 pad 1 group 2 -> relu (= cam_features)
    global average pooling -> dropout 0.5 -> classifier

A 227x227 input gives 55 -> 27 -> 13 -> 11, an 11x11 CAM; with 1000 classes the model
has exactly 5,133,800 parameters.
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

DEFAULT_INPUT_SHAPE = (227, 227, 3)


__all__ = ["DEFAULT_INPUT_SHAPE", "alexnet_gap"]


def alexnet_gap(
    num_classes,
    input_shape=None,
    batch_norm=False,
    groups=2,
    dropout=0.5,
    dtype_policy=None,
    seed=None,
    name="alexnet_gap",
):
    """Builds the CAM paper's AlexNet-GAP as a functional ``keras.Model``.

    Args:
        num_classes: number of classes ``K``.
        input_shape: ``(H, W, 3)``; default ``(227, 227, 3)``; H, W may be None.
        batch_norm: if True, every conv is followed by BatchNormalization (conv without
            bias) and the two LRN layers are dropped (the Hide-and-Seek authors' AlexNet).
        groups: 2 (reference, two-GPU AlexNet grouping of conv2, conv4-7) or 1.
        dropout: dropout rate after global average pooling (reference 0.5).
        dtype_policy: None (global Keras policy) or a policy name, e.g. "mixed_bfloat16".
        seed: None (Keras' global seeding) or an int fixing every initialiser and dropout.
        name: model name.

    Returns:
        A built model: input ``[B, H, W, 3]`` normalised images, output float32 logits
        ``[B, K]``; layer ``cam_features`` outputs ``[B, h, w, 512]``.
    """
    check_num_classes(num_classes, name)
    input_shape = check_input_shape(input_shape, DEFAULT_INPUT_SHAPE, name, min_size=55)
    dtype_policy = check_dtype_policy(dtype_policy)
    seeds = LayerSeeds(seed)
    if groups not in (1, 2):
        raise ValueError(f"{name}: `groups` must be 1 or 2, received {groups!r}")

    def conv(x, filters, kernel, conv_name, strides=1, grouped=False, act_name=None):
        x = conv2d(
            filters,
            kernel,
            strides=strides,
            padding="valid" if kernel == 11 else "same",
            groups=groups if grouped else 1,
            use_bias=not batch_norm,
            kernel_initializer=seeds.kernel(),
            name=conv_name,
            dtype=dtype_policy,
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{conv_name}_bn", dtype=dtype_policy)(x)
        return keras.layers.ReLU(name=act_name or f"{conv_name}_relu", dtype=dtype_policy)(x)

    def pool_norm(x, index):
        x = CaffeMaxPooling2D(3, 2, name=f"pool{index}", dtype=dtype_policy)(x)
        if not batch_norm:
            x = LocalResponseNormalization(5, 1e-4, 0.75, name=f"norm{index}", dtype=dtype_policy)(x)
        return x

    inputs = keras.Input(shape=input_shape, name="images")
    x = conv(inputs, 96, 11, "conv1", strides=4)
    x = pool_norm(x, 1)
    x = conv(x, 256, 5, "conv2", grouped=True)
    x = pool_norm(x, 2)
    x = conv(x, 384, 3, "conv3")
    x = conv(x, 384, 3, "conv4", grouped=True)
    x = conv(x, 384, 3, "conv5", grouped=True)
    x = CaffeMaxPooling2D(3, 1, name="pool5", dtype=dtype_policy)(x)
    x = conv(x, 512, 3, "conv6", grouped=True)
    features = conv(x, 512, 3, "conv7", grouped=True, act_name="cam_features")
    logits = gap_classifier(features, num_classes, dropout, dtype_policy, seeds)
    return keras.Model(inputs, logits, name=name)
