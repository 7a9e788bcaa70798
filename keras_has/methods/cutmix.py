"""`cutmix`: CutMix (Yun et al., ICCV 2019), in the train step.

With probability `cutmix_prob` a batch gets one box of area ratio `1 - lam`,
`lam ~ Beta(cutmix_beta, cutmix_beta)`, pasted from a random permutation of the batch
(`keras_has.methods.ops.cutmix_batch`); the loss is the area-weighted sum of both
labels' cross-entropies (`MixedLabelCrossentropy`). Under `MirroredStrategy` each
replica mixes its own share of the batch. Accuracy during training is measured
against the unpasted labels, as wsolevaluation does.
"""
import keras
import tensorflow as tf

from keras_has.methods import context, ops
from keras_has.methods.base import Method


@keras.saving.register_keras_serializable(package="keras_has_methods")
class MixedLabelCrossentropy(keras.losses.Loss):
    """Sparse cross-entropy from logits; inside a CutMix training step
    `w * CE(labels) + (1 - w) * CE(mix_labels)` per example (`StepContext`)."""

    def __init__(self, name="mixed_label_crossentropy", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        logits = tf.cast(y_pred, tf.float32)
        labels = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        step = context.current()
        if step is not None and step.mix_labels is not None:
            other = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(step.mix_labels, tf.int32), logits=logits)
            loss = step.mix_weight * loss + (1.0 - step.mix_weight) * other
        return loss

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": None}


class CutMix(Method):
    name = "cutmix"
    title = "CutMix"
    hyperparameters = ("cutmix_beta", "cutmix_prob")

    def augment_batch(self, images, labels, seed):
        mixed, other, weight = ops.cutmix_batch(
            images, labels, seed, beta=self.config.cutmix_beta, prob=self.config.cutmix_prob)
        return mixed, {"mix_labels": other, "mix_weight": weight}

    def loss(self):
        return MixedLabelCrossentropy()
