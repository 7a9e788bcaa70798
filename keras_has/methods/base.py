"""The method seam: what a WSOL method may change, and the generic training hook.

A `Method` declares only what it changes (every hook defaults to "nothing"):

- `pipeline_hiding(hiding, image_size)`: per-image augmentation inside `tf.data`
  (Hide-and-Seek's grid hiding);
- `augment_batch(images, labels, seed)`: batch-level augmentation in the train step
  (CutMix), returning the images and the extra loss inputs;
- `build(model, seed)`: layers inserted into the backbone (ADL) or extra heads and
  their losses (ACoL, SPG); the returned model keeps the single float32 logits output,
  and a `MethodHead` last layer records how its CAM is computed (`keras_has.localize.cams`);
- `loss()`: the compiled classification loss (CutMix mixes two labels);
- `check(config)`: what the method needs from the rest of the configuration.

The trainer, evaluator, callbacks, export and comparison only call these hooks and
`prepare_training`; they know no method by name.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_has.methods import context

__all__ = ["Method", "prepare_training", "step_seed"]


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
        """`(images, extras)` for one per-replica training batch; `extras` are
        `StepContext` fields (`mix_labels`, `mix_weight`)."""
        return images, {}

    def build(self, model, seed=None, **info):
        """The method's model from a built `keras_has.models` model (shares its layers)."""
        return model

    def loss(self):
        """The compiled loss on `(labels, logits)`."""
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


def prepare_training(model, method: Method, seed: int = 0):
    """Wraps `model.train_step` (on this instance only; nothing is saved with it) so
    that every training step runs `method.augment_batch` and traces the model with a
    `keras_has.methods.context.StepContext` holding the step's labels. Returns `model`.

    Call it after `model.compile`; composing with other wrappers of `train_step` is
    fine.
    """
    base_step = model.train_step

    def train_step(data):
        x, y = data[0], data[1]
        step = model.optimizer.iterations if model.optimizer is not None else 0
        x, extras = method.augment_batch(x, y, step_seed(seed, step))
        with context.step_context(context.StepContext(labels=y, **extras)):
            return base_step((x, y, *data[2:]))

    model.train_step = train_step
    return model
