"""1x1 convolutions whose training gradients are matrix products.

A 1x1 convolution of ``x [B, H, W, C]`` with ``kernel [1, 1, C, F]`` is the matrix
product ``X [M, C] @ K [C, F]`` with ``M = B*H*W`` (stride ``s``: ``X`` holds every
``s``-th row and column). Its gradients are products too:

* kernel: ``dK = X^T @ dY`` (``[C, M] @ [M, F]``),
* input (stride 1): ``dX = dY @ K^T``; with a stride, TensorFlow's
  ``Conv2DBackpropInput`` (the input gradient is zero between the sampled pixels),
* bias: ``db = 1^T @ dY`` (one ``[1, M] @ [M, F]`` product).

Under bfloat16 on CPU, oneDNN's matrix product runs these 2-3x faster than its
``Conv2DBackpropFilter`` for 1x1 kernels (ResNet50's bottlenecks: 200-390 GFLOP/s for the
convolution's kernel gradient, against 1000+ for 3x3 kernels), and the product
accumulates the bias gradient in float32, where bfloat16 ``BiasAddGrad`` sums in bfloat16
(docs/design/performance.md has the measurements). The forward pass is TensorFlow's
convolution unchanged (grappler fuses it with the bias and activation as before).

``Conv2D`` is ``keras.layers.Conv2D`` with that gradient for its 1x1 case in training
under a bfloat16 compute dtype; everything else (other kernels, float32 / float16,
inference, groups, dilation, channels-first) runs Keras' own code. The backbones built by
``keras_has.models.build_backbone`` use it by default (``pointwise_matmul=False`` keeps
``keras.layers.Conv2D``).
"""
import keras
import tensorflow as tf

_PACKAGE = "keras_has"
# The compute dtypes where the matrix-product gradient measured faster (float32: no
# gain, 1-2 % either way; float16 is a GPU policy, where cuDNN's kernels are not the
# bottleneck this addresses).
_MATMUL_GRADIENT_DTYPES = ("bfloat16",)


__all__ = ["pointwise_conv2d", "Conv2D"]


def _pointwise_forward_backward(x, kernel, bias, stride):
    channels, filters = kernel.shape[2], kernel.shape[3]
    y = tf.nn.conv2d(x, kernel, strides=stride, padding="VALID")
    if bias is not None:
        y = tf.nn.bias_add(y, bias)

    def grad(dy):
        dy_rows = tf.reshape(dy, [-1, filters])
        if stride == 1:
            sampled = x
            kernel_matrix = tf.reshape(kernel, [channels, filters])
            dx = tf.reshape(tf.linalg.matmul(dy_rows, kernel_matrix, transpose_b=True), tf.shape(x))
        else:
            # A 1x1 max pool with the stride is the strided subsample, on oneDNN's pooling
            # kernel (a strided slice of bfloat16 measured far slower).
            sampled = tf.nn.max_pool2d(x, ksize=1, strides=stride, padding="VALID")
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x),
                filter=kernel,
                out_backprop=dy,
                strides=[1, stride, stride, 1],
                padding="VALID",
            )
        x_rows = tf.reshape(sampled, [-1, channels])
        dkernel = tf.reshape(tf.linalg.matmul(x_rows, dy_rows, transpose_a=True), tf.shape(kernel))
        if bias is None:
            return dx, dkernel
        ones = tf.ones(tf.stack([1, tf.shape(dy_rows)[0]]), dy.dtype)
        dbias = tf.reshape(tf.linalg.matmul(ones, dy_rows), [filters])
        return dx, dkernel, dbias

    return y, grad


def pointwise_conv2d(x, kernel, bias=None, stride=1):
    """1x1 convolution plus optional bias, with matrix-product gradients.

    Args:
        x: ``[B, H, W, C]`` tensor.
        kernel: ``[1, 1, C, F]`` tensor of ``x``'s dtype.
        bias: None or a ``[F]`` tensor of ``x``'s dtype.
        stride: int, the same in both spatial dimensions.

    Returns:
        ``[B, ceil(H / stride), ceil(W / stride), F]``: exactly
        ``tf.nn.conv2d(x, kernel, stride, "VALID")`` (``"SAME"`` is the same for 1x1
        kernels) plus ``bias``; the gradients are the same function computed as products.
    """
    if len(kernel.shape) != 4 or tuple(kernel.shape[:2]) != (1, 1):
        raise ValueError(f"pointwise_conv2d: kernel must be [1, 1, C, F], received shape {kernel.shape}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"pointwise_conv2d: stride must be an int >= 1, received {stride!r}")
    if bias is None:

        @tf.custom_gradient
        def convolve(x, kernel):
            return _pointwise_forward_backward(x, kernel, None, stride)

        return convolve(x, kernel)

    @tf.custom_gradient
    def convolve_with_bias(x, kernel, bias):
        return _pointwise_forward_backward(x, kernel, bias, stride)

    return convolve_with_bias(x, kernel, bias)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose 1x1 training gradients are matrix products.

    Keeps Keras' class name (like ``FusedBatchNormalization``), so ``.weights.h5`` files
    stay interchangeable with models built on ``keras.layers.Conv2D``; serialised as
    ``keras_has>Conv2D`` (alias ``PointwiseMatmulConv2D``). The matrix-product path is
    taken when all hold: training, TensorFlow backend, compute dtype bfloat16, kernel
    1x1, ``groups == 1``, dilation 1, channels last, equal strides. The output is the same
    convolution either way.

    Args:
        Every argument of ``keras.layers.Conv2D``, with the same meaning and defaults.

    Shapes:
        as ``keras.layers.Conv2D``: ``[B, H, W, C]`` -> ``[B, H', W', filters]``.
    """

    def _matmul_gradient_applies(self, inputs):
        return (
            keras.backend.backend() == "tensorflow"
            and keras.backend.standardize_dtype(self.compute_dtype) in _MATMUL_GRADIENT_DTYPES
            and tuple(self.kernel_size) == (1, 1)
            and self.groups == 1
            and tuple(self.dilation_rate) == (1, 1)
            and self.data_format == "channels_last"
            and self.strides[0] == self.strides[1]
            and len(inputs.shape) == 4
        )

    def call(self, inputs, training=None):
        if not (training and self._matmul_gradient_applies(inputs)):
            return super().call(inputs)
        x = tf.convert_to_tensor(inputs)
        kernel = tf.convert_to_tensor(self.kernel)
        bias = tf.convert_to_tensor(self.bias) if self.use_bias else None
        y = pointwise_conv2d(x, kernel, bias, int(self.strides[0]))
        return self.activation(y) if self.activation is not None else y


PointwiseMatmulConv2D = Conv2D
