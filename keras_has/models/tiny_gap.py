"""A small, fast GAP CNN for tests and quick CPU runs (64-128 px inputs).

Each block is conv 3x3 (no bias) -> BatchNorm -> ReLU, and every block but the last is
followed by 2x2 max pooling; the last block's ReLU is ``cam_features``. With the default
four blocks the CAM is 1/8 of the input (8x8 at 64 px, 16x16 at 128 px).
"""
import keras

from keras_has.models.layers import (
    LayerSeeds,
    check_dtype_policy,
    check_input_shape,
    check_num_classes,
    gap_classifier,
)

DEFAULT_INPUT_SHAPE = (64, 64, 3)


def tiny_gap(
    num_classes,
    input_shape=None,
    widths=(32, 64, 128, 256),
    dropout=0.0,
    dtype_policy=None,
    seed=None,
    name="tiny_gap",
):
    """Builds the tiny GAP CNN.

    Args:
        num_classes: number of classes ``K``.
        input_shape: ``(H, W, 3)``; default ``(64, 64, 3)``; H, W may be None.
        widths: filters of each conv block (at least one block).
        dropout: dropout rate after global average pooling.
        dtype_policy: None (global Keras policy) or a policy name, e.g. "mixed_bfloat16".
        seed: None (Keras' global seeding) or an int fixing every initialiser and dropout.
        name: model name.

    Returns:
        A built model: input ``[B, H, W, 3]``, float32 logits ``[B, K]``; layer
        ``cam_features`` outputs ``[B, H / 2^(n-1), W / 2^(n-1), widths[-1]]``.
    """
    check_num_classes(num_classes, name)
    widths = tuple(widths)
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"{name}: `widths` must be a non-empty sequence of positive ints, received {widths!r}")
    input_shape = check_input_shape(input_shape, DEFAULT_INPUT_SHAPE, name, min_size=2 ** (len(widths) - 1))
    dtype_policy = check_dtype_policy(dtype_policy)
    seeds = LayerSeeds(seed)

    inputs = keras.Input(shape=input_shape, name="images")
    x = inputs
    last = len(widths) - 1
    for i, width in enumerate(widths):
        block = f"block{i + 1}"
        x = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=seeds.kernel(),
            name=f"{block}_conv",
            dtype=dtype_policy,
        )(x)
        x = keras.layers.BatchNormalization(name=f"{block}_bn", dtype=dtype_policy)(x)
        x = keras.layers.ReLU(name="cam_features" if i == last else f"{block}_relu", dtype=dtype_policy)(x)
        if i != last:
            x = keras.layers.MaxPooling2D(2, name=f"{block}_pool", dtype=dtype_policy)(x)
    logits = gap_classifier(x, num_classes, dropout, dtype_policy, seeds)
    return keras.Model(inputs, logits, name=name)
