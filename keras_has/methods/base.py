"""The method seam: what a WSOL method may change.

A `Method` declares only what it changes (every hook defaults to "nothing"):

- `pipeline_hiding(hiding, image_size)`: per-image augmentation inside `tf.data`
  (Hide-and-Seek's grid hiding);
- `augment_batch(images, labels, seed)`: batch-level augmentation in the train step
  (CutMix), returning the images and the loss targets;
- `build(model, seed)`: layers inserted into the backbone (ADL) or extra heads and
  their losses (ACoL, SPG); the returned model keeps the single float32 logits output,
  and a `MethodHead` last layer records how its CAM is computed (`keras_has.localize.cams`);
- `loss()`: the classification loss on `(targets, logits)` (CutMix mixes two labels);
- `check(config)`: what the method needs from the rest of the configuration.

`keras_has.methods.training.TrainingModel` calls the training hooks (labels reach the
method's layers as a graph input there); the trainer, evaluator, callbacks, export and
comparison know no method by name.
"""
from __future__ import annotations

import keras
import tensorflow as tf

__all__ = ["Method", "step_seed", "target_labels"]


class Method:
    """Base class: the CAM baseline (changes nothing).

    Args:
      config: a `keras_has.config.MethodConfig` with the method's hyperparameters
        (None: the defaults).

    Attributes:
      name: registry name; title: name in tables and figures.
    """

    name = "cam"
    title = "CAM"
    hyperparameters: tuple[str, ...] = ()

    def __init__(self, config=None):
        if config is None:
            from keras_has.config import MethodConfig

            config = MethodConfig(method=self.name)
        self.config = config

    # -------------------------------------------------------------- declarations
    def check(self, config) -> None:
        """Raises ValueError when the method cannot run with the `TrainConfig`."""
        if config.hiding.enabled:
            raise ValueError(
                f"method: {self.name!r} trains without Hide-and-Seek hiding, but "
                f"grid_sizes={list(config.hiding.grid_sizes)} hide_prob="
                f"{config.hiding.hide_prob} hide patches; pass --grid_sizes= (empty) or "
                "--method=has")

    def pipeline_hiding(self, hiding, image_size):
        """The `hiding` argument of `keras_has.data.make_train_dataset` (None: none)."""
        return None

    def augment_batch(self, images, labels, seed):
        """`(images, targets)` for one per-replica training batch: images
        `[B, H, W, C]`, labels int `[B]`, `seed` a stateless seed int `[2]`; `targets`
        is what `loss()` compares the logits with (here the labels themselves; CutMix: a
        dict that holds them under `labels`, see `target_labels`)."""
        return images, labels

    def build(self, model, seed=None, **info):
        """The method's model from a built `keras_has.models` model (shares its layers)."""
        return model

    def loss(self):
        """The classification loss on `(targets, logits)`: `targets` are
        `augment_batch`'s in training and the labels at evaluation."""
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def hyperparameter_values(self) -> dict:
        return {k: getattr(self.config, k) for k in self.hyperparameters}

    def __repr__(self):
        values = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameter_values().items())
        return f"{type(self).__name__}({values})"


def step_seed(seed: int, step) -> tf.Tensor:
    """A stateless seed `[2]` for a training step (differs per replica)."""
    replica = 0
    ctx = tf.distribute.get_replica_context()
    if ctx is not None:
        replica = ctx.replica_id_in_sync_group
    step = tf.cast(step, tf.int64)
    return tf.stack([tf.constant(int(seed), tf.int64) * 1000003 + tf.cast(replica, tf.int64),
                     step])


def target_labels(targets):
    """The ground-truth labels `[B]` in a step's loss targets: `targets` itself, or its
    `labels` entry when a method's targets are a dict (CutMix)."""
    return targets["labels"] if isinstance(targets, dict) else targets
