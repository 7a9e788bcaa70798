"""Batch normalisation through TensorFlow's fused kernel, with Keras' semantics.

Keras 3's ``BatchNormalization`` runs, on the TensorFlow backend, as separate float32
element-wise ops (cast, mean, squared difference, rsqrt, multiply, add, ... and their
gradients), with a cast of the whole activation to float32 and back under a
mixed-precision policy. ``FusedBatchNormalization`` computes the same function with one
``FusedBatchNormV3`` op forward and one ``FusedBatchNormGradV3`` op backward (oneDNN
kernels on CPU, cuDNN on GPU), directly on bfloat16 / float16 activations; see
docs/design/performance.md for what it measured.

It is a subclass of ``keras.layers.BatchNormalization`` with the same constructor, the
same config, and the same four variables (``gamma``, ``beta``, ``moving_mean``,
``moving_variance``, all float32) and the same class name, so weights saved from either
class load into the other. Semantics kept:

* training (``training=True`` and ``layer.trainable``): normalise with the batch mean
  and the *biased* batch variance over ``[B, H, W]``; update
  ``moving = moving * momentum + batch * (1 - momentum)`` with the biased variance
  (the fused op reports the Bessel-corrected variance; it is rescaled by ``(n - 1) / n``);
* inference, or a frozen layer (``trainable=False``): normalise with the moving
  statistics;
* ``epsilon`` exactly as given (no clamping);
* statistics and the affine transform in float32, the output in the layer's compute
  dtype.

Cases the fused op does not cover run Keras' own implementation unchanged: an input
whose rank is not 4 or whose normalised axis is not the last one, a mask, ``renorm``,
``synchronized=True``, or a backend other than TensorFlow.
"""
import keras
import tensorflow as tf

_PACKAGE = "keras_has"
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


__all__ = ["BatchNormalization"]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's ``FusedBatchNormV3``.

    The class keeps Keras' class name on purpose: Keras 3 ``.weights.h5`` files address
    a layer's variables by its class name (``.../batch_normalization_3/vars/0``), so the
    same name keeps weights files interchangeable with models built on
    ``keras.layers.BatchNormalization`` (also under the alias
    ``FusedBatchNormalization``; serialised as ``keras_has>BatchNormalization``).

    Args:
        Every argument of ``keras.layers.BatchNormalization`` (``axis``, ``momentum``,
        ``epsilon``, ``center``, ``scale``, initialisers, regularisers, constraints,
        ``synchronized``, ``renorm``, ...), with the same meaning and defaults.

    Shapes:
        input ``[B, H, W, C]`` (normalised over ``B, H, W`` per channel ``C``) ->
        output ``[B, H, W, C]`` in the layer's compute dtype. Other ranks or axes are
        accepted and computed by the parent class.
    """

    def _fused_applies(self, inputs, mask):
        if keras.backend.backend() != "tensorflow" or mask is not None or self.renorm or self.synchronized:
            return False
        rank = len(inputs.shape)
        if rank != 4 or self.axis not in (-1, 3):
            return False
        return keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.convert_to_tensor(inputs)
        compute_dtype = keras.backend.standardize_dtype(self.compute_dtype)
        if compute_dtype in _FUSED_DTYPES and x.dtype != compute_dtype:
            x = tf.cast(x, compute_dtype)
        channels = x.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels], tf.float32)
        gamma = tf.cast(gamma, tf.float32)
        beta = tf.cast(beta, tf.float32)
        if training and self.trainable:
            y, batch_mean, batch_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.zeros([0], tf.float32),
                variance=tf.zeros([0], tf.float32),
                epsilon=self.epsilon,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=True,
            )
            shape = tf.shape(x)
            n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
            # The op reports the Bessel-corrected variance; Keras tracks the biased one.
            biased_variance = batch_variance * ((n - 1.0) / tf.maximum(n, 1.0))
            self.moving_mean.assign(self.moving_mean * self.momentum + batch_mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + biased_variance * (1.0 - self.momentum)
            )
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=gamma,
                offset=beta,
                mean=tf.cast(tf.convert_to_tensor(self.moving_mean), tf.float32),
                variance=tf.cast(tf.convert_to_tensor(self.moving_variance), tf.float32),
                epsilon=self.epsilon,
                exponential_avg_factor=1.0,
                data_format="NHWC",
                is_training=False,
            )
        return tf.cast(y, self.compute_dtype) if y.dtype != self.compute_dtype else y


FusedBatchNormalization = BatchNormalization
