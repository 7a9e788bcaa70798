"""Caffe-style Keras layers of the CAM-paper networks (AlexNet-GAP, GoogLeNet-GAP).

Caffe semantics these networks depend on:

* ``CaffeMaxPooling2D``: Caffe rounds pooled sizes *up*
  (``out = ceil((H + 2 * pad - k) / s) + 1``); Keras' ``"valid"`` rounds down and
  ``"same"`` pads symmetrically, so neither gives the reference CAM sizes (for
  example AlexNet's 55 -> 27 and GoogLeNet's 112 -> 56).
* ``LocalResponseNormalization``: Caffe's cross-channel LRN,
  ``b = a / (k + alpha / n * sum_{window n} a^2) ** beta``, i.e. Caffe's ``alpha`` is
  divided by the window size ``n`` before calling ``tf.nn.local_response_normalization``.
"""
import functools

import keras
import tensorflow as tf

_PACKAGE = "keras_has"


__all__ = ["CaffeMaxPooling2D", "LocalResponseNormalization", "native_grouped_conv_supported",
           "GroupedConv2D", "conv2d"]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CaffeMaxPooling2D(keras.layers.Layer):
    """Max pooling with Caffe's ceil-mode output size, on channels-last images.

    The input is padded with ``pad`` on every side, and additionally on the bottom and
    right by the amount that ceil rounding needs; padded cells never win the max
    (they hold the dtype's lowest value). Works for dynamic spatial sizes.

    Args:
        pool_size: int, square window size ``k``.
        strides: int, stride ``s``.
        pad: int, Caffe's symmetric ``pad`` (default 0).

    Shapes:
        input ``[B, H, W, C]`` -> output
        ``[B, ceil((H + 2 pad - k) / s) + 1, ceil((W + 2 pad - k) / s) + 1, C]``.
    """

    def __init__(self, pool_size, strides, pad=0, **kwargs):
        super().__init__(**kwargs)
        for arg, value, low in (("pool_size", pool_size, 1), ("strides", strides, 1), ("pad", pad, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"CaffeMaxPooling2D: `{arg}` must be an int >= {low}, received {value!r}")
        if pad >= pool_size:
            raise ValueError(
                f"CaffeMaxPooling2D: `pad` must be smaller than `pool_size` ({pool_size}), received {pad}"
            )
        self.pool_size = pool_size
        self.strides = strides
        self.pad = pad

    def _out_size(self, n):
        return (n + 2 * self.pad - self.pool_size + self.strides - 1) // self.strides + 1

    def call(self, inputs):
        k, s, p = self.pool_size, self.strides, self.pad
        height, width = inputs.shape[1], inputs.shape[2]
        if p == 0 and height is not None and width is not None and all(
            (self._out_size(n) - 1) * s + k <= n for n in (height, width)
        ):
            # Ceil and floor rounding agree for these static sizes: no padding copy.
            return tf.nn.max_pool2d(inputs, ksize=k, strides=s, padding="VALID")
        shape = tf.shape(inputs)
        extra = []
        for n in (shape[1], shape[2]):
            out = self._out_size(n)
            extra.append(tf.maximum((out - 1) * s + k - (n + 2 * p), 0))
        paddings = [[0, 0], [p, p + extra[0]], [p, p + extra[1]], [0, 0]]
        x = tf.pad(inputs, paddings, constant_values=inputs.dtype.min)
        return tf.nn.max_pool2d(x, ksize=k, strides=s, padding="VALID")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        h = None if h is None else self._out_size(h)
        w = None if w is None else self._out_size(w)
        return (b, h, w, c)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, pad=self.pad)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Caffe cross-channel local response normalisation (AlexNet / GoogLeNet ``LRN``).

    ``out = x / (k + alpha / size * sum_{|c' - c| <= size // 2} x_{c'}^2) ** beta``,
    computed in float32 and cast back to the input dtype (safe under mixed precision).

    Args:
        size: odd int, Caffe ``local_size`` (channels in the window, default 5).
        alpha: float, Caffe ``alpha`` (default 1e-4); divided by ``size`` internally.
        beta: float, Caffe ``beta`` (default 0.75).
        k: float, Caffe ``k`` (default 1.0).

    Shapes:
        input ``[B, H, W, C]`` -> output ``[B, H, W, C]``.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"LocalResponseNormalization: `size` must be an odd int >= 1, received {size!r}")
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        y = tf.nn.local_response_normalization(
            x, depth_radius=self.size // 2, bias=self.k, alpha=self.alpha / self.size, beta=self.beta
        )
        return tf.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)
        return config


@functools.lru_cache(maxsize=None)
def native_grouped_conv_supported():
    """Whether ``tf.nn.conv2d`` accepts a grouped kernel (input channels = C / groups)
    on CPU, forward and backward, in float32 and bfloat16: True with TensorFlow's oneDNN
    kernels (the default on x86 Linux), False with Eigen's. Probed once, eagerly, on
    tiny tensors. Where the CPU takes it, so does cuDNN on a GPU."""
    with tf.init_scope(), tf.device("/CPU:0"):
        try:
            for dtype in (tf.float32, tf.bfloat16):
                x = tf.ones([1, 2, 2, 4], dtype)
                kernel = tf.ones([1, 1, 2, 4], dtype)
                y = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
                grad_x = tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=x.shape, filter=kernel, out_backprop=y, strides=[1, 1, 1, 1], padding="VALID"
                )
                grad_kernel = tf.raw_ops.Conv2DBackpropFilter(
                    input=x, filter_sizes=kernel.shape, out_backprop=y, strides=[1, 1, 1, 1], padding="VALID"
                )
                # Every output sums 2 ones (2 each); each input reaches 4 filters of 2.
                expected = ((y, 32.0), (grad_x, 64.0), (grad_kernel, 64.0))
                if any(float(tf.reduce_sum(tf.cast(t, tf.float32))) != total for t, total in expected):
                    return False
        except (tf.errors.OpError, ValueError):
            return False
    return True


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupedConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose ``groups > 1`` runs on TensorFlow's own kernels.

    Same arguments, kernel layout ``[kh, kw, C / groups, filters]``, weights and outputs as
    ``Conv2D(groups=...)`` (group ``g`` sees input channels ``g*C/G:(g+1)*C/G`` and makes
    filters ``g*F/G:(g+1)*F/G``, as Caffe's ``group``). Only the execution differs: on CPU,
    Keras runs grouped ``Conv2D`` through a per-op XLA kernel that measured 5-9x
    (float32) and 29-32x (bfloat16) slower for AlexNet's conv4 forward+backward
    (``scripts/benchmark_models.py --grouped_conv``). This layer calls ``tf.nn.conv2d``
    with the grouped kernel directly where TensorFlow's kernels take it (oneDNN on CPU,
    cuDNN on GPU: one grouped convolution, which grappler fuses with the bias and a
    following ReLU), and otherwise one convolution per group, concatenated (TensorFlow
    built without oneDNN, or ``TF_ENABLE_ONEDNN_OPTS=0``). Channels-last only.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups > 1 and self.data_format != "channels_last":
            raise ValueError(f"GroupedConv2D supports data_format='channels_last' only, received {self.data_format!r}")

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        if native_grouped_conv_supported():
            return tf.nn.conv2d(
                inputs,
                kernel,
                strides=list(self.strides),
                padding=self.padding.upper(),
                dilations=list(self.dilation_rate),
            )
        return self._split_convolution(inputs, kernel)

    def _split_convolution(self, inputs, kernel):
        xs = keras.ops.split(inputs, self.groups, axis=-1)
        ks = keras.ops.split(kernel, self.groups, axis=-1)
        outputs = [
            keras.ops.conv(
                x,
                k,
                strides=list(self.strides),
                padding=self.padding,
                dilation_rate=self.dilation_rate,
                data_format=self.data_format,
            )
            for x, k in zip(xs, ks)
        ]
        return keras.ops.concatenate(outputs, axis=-1)


def conv2d(filters, kernel_size, groups=1, **kwargs):
    """``keras.layers.Conv2D`` for ``groups == 1``, else the equivalent ``GroupedConv2D``."""
    cls = GroupedConv2D if groups > 1 else keras.layers.Conv2D
    return cls(filters, kernel_size, groups=groups, **kwargs)
