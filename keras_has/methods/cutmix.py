"""`cutmix`: CutMix (Yun et al., ICCV 2019), in the train step.

With probability `cutmix_prob` a batch gets one box of area ratio `1 - lam`,
`lam ~ Beta(cutmix_beta, cutmix_beta)`, pasted from a random permutation of the batch
(`keras_has.methods.ops.cutmix_batch`); `augment_batch` returns the pasted images and
the loss targets `{"labels", "mix_labels", "mix_weight"}`, and the loss is the
area-weighted sum of both labels' cross-entropies (`MixedLabelCrossentropy`). Under
`MirroredStrategy` each replica mixes its own share of the batch. Accuracy during
training is measured against the unpasted labels, as wsolevaluation does.
"""
import keras
import tensorflow as tf

from keras_has.methods import ops
from keras_has.methods.base import Method


__all__ = ["MixedLabelCrossentropy", "CutMix"]


@keras.saving.register_keras_serializable(package="keras_has_methods")
class MixedLabelCrossentropy(keras.losses.Loss):
    """Sparse cross-entropy from logits of a CutMix batch.

    `y_true` is either int labels `[B]` (evaluation: the plain cross-entropy) or the
    targets of `CutMix.augment_batch`, a dict with `labels` `[B]`, `mix_labels` `[B]`
    (the pasted images' classes) and `mix_weight` (float32 scalar, the weight of
    `labels`); the loss per example is then
    `mix_weight * CE(labels) + (1 - mix_weight) * CE(mix_labels)`.
    `y_pred`: logits `[B, K]`.
    """

    def __init__(self, name="mixed_label_crossentropy", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        mixed = isinstance(y_true, dict)
        if mixed and set(y_true) != {"labels", "mix_labels", "mix_weight"}:
            raise ValueError(f"MixedLabelCrossentropy: expected targets with keys "
                             f"['labels', 'mix_labels', 'mix_weight'], received "
                             f"{sorted(y_true)}")
        logits = tf.cast(y_pred, tf.float32)
        labels = tf.cast(tf.reshape(y_true["labels"] if mixed else y_true, [-1]), tf.int32)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if mixed:
            weight = y_true["mix_weight"]
            other = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(y_true["mix_labels"], tf.int32), logits=logits)
            loss = weight * loss + (1.0 - weight) * other
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
        return mixed, {"labels": labels, "mix_labels": other, "mix_weight": weight}

    def loss(self):
        return MixedLabelCrossentropy()
