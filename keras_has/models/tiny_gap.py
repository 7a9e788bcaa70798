"""A small, fast GAP CNN for tests and quick CPU runs (64-128 px inputs).

Each block is conv 3x3 (no bias) -> BatchNorm -> ReLU; the first ``pools`` blocks are
followed by 2x2 max pooling (default: every block but the last), and the last block's
ReLU is ``cam_features``. With the default four blocks the CAM is 1/8 of the input (8x8
at 64 px); ``pools=2`` keeps it at 1/4 (16x16 at 64 px), fine enough to box a part that
is a tenth of the object.
"""
import keras

from keras_has.models.building import (
    LayerSeeds,
    check_dtype_policy,
    check_input_shape,
    check_num_classes,
    gap_classifier,
)

DEFAULT_INPUT_SHAPE = (64, 64, 3)


__all__ = ["DEFAULT_INPUT_SHAPE", "tiny_gap"]


def tiny_gap(
    num_classes,
    input_shape=None,
    widths=(32, 64, 128, 256),
    dropout=0.0,
    pools=None,
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
        pools: how many of the first blocks are followed by 2x2 max pooling, from 0 to
            ``len(widths) - 1``; None means ``len(widths) - 1``. The CAM is the input
            divided by ``2 ** pools``.
        dtype_policy: None (global Keras policy) or a policy name, e.g. "mixed_bfloat16".
        seed: None (Keras' global seeding) or an int fixing every initialiser and dropout.
        name: model name.

    Returns:
        A built model: input ``[B, H, W, 3]``, float32 logits ``[B, K]``; layer
        ``cam_features`` outputs ``[B, H / 2^pools, W / 2^pools, widths[-1]]``.
    """
    check_num_classes(num_classes, name)
    widths = tuple(widths)
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"{name}: `widths` must be a non-empty sequence of positive ints, received {widths!r}")
    if pools is None:
        pools = len(widths) - 1
    if not isinstance(pools, int) or isinstance(pools, bool) or not 0 <= pools < len(widths):
        raise ValueError(f"{name}: `pools` must be an int in [0, {len(widths) - 1}] "
                         f"(blocks followed by pooling), received {pools!r}")
    input_shape = check_input_shape(input_shape, DEFAULT_INPUT_SHAPE, name, min_size=2 ** pools)
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
        if i < pools:
            x = keras.layers.MaxPooling2D(2, name=f"{block}_pool", dtype=dtype_policy)(x)
    logits = gap_classifier(x, num_classes, dropout, dtype_policy, seeds)
    return keras.Model(inputs, logits, name=name)
