"""The optimizer and its schedules: learning rate and weight decay per epoch, SGD with
the rate outside momentum and Caffe's coupled weight decay, the head's rate multiplier
and the head-only warm-up.

Weight decay: Caffe and Torch add `lambda * w` to the gradient before momentum
(coupled L2). Keras' `SGD(weight_decay=...)` is decoupled (it shrinks the weights
outside momentum), which with momentum 0.9 is about ten times weaker for the same
number, so `L2SGD` adds the coupled term itself, from a variable that the schedule
callback sets to 0 after `weight_decay_until_epoch`.

Momentum: `L2SGD` applies the learning rate outside the momentum buffer (PyTorch's and
wsolevaluation's form, see `_RateOutsideMomentumSGD`), so a step of the schedule takes
effect at once.
"""
from __future__ import annotations

import math

import keras

__all__ = ["scaled_boundary", "scaled_boundaries", "learning_rate_at", "weight_decay_at",
           "L2SGD", "L2Adam", "make_optimizer", "head_variable_paths",
           "freeze_backbone_batchnorm", "EpochSchedule"]


# --------------------------------------------------------------------------- schedule
def scaled_boundary(boundary: int, epochs: int, reference_epochs: int | None) -> int:
    """A reference-run epoch boundary scaled to a run of `epochs` epochs.

    `round(boundary * epochs / reference_epochs)` (halves round up), at least 1 so that
    the first epoch always uses the first value. Unscaled when `reference_epochs` is
    None. E.g. boundary 18 of 55: 18 for 55 epochs, 2 for 5 epochs (18*5/55 = 1.64).
    """
    if not reference_epochs:
        return int(boundary)
    return max(1, int(boundary * epochs / reference_epochs + 0.5))


def scaled_boundaries(boundaries, epochs: int, reference_epochs: int | None) -> tuple[int, ...]:
    return tuple(scaled_boundary(b, epochs, reference_epochs) for b in boundaries)


def learning_rate_at(epoch: float, optim, epochs: int) -> float:
    """Learning rate at the 0-based `epoch` (= number of completed epochs; for the
    cosine schedule a fraction such as 2.5, half-way through the third epoch)."""
    if optim.lr_schedule == "cosine":
        progress = min(max(float(epoch) / epochs, 0.0), 1.0)
        return float(optim.lr_values[0] * 0.5 * (1.0 + math.cos(math.pi * progress)))
    bounds = scaled_boundaries(optim.lr_boundaries, epochs, optim.schedule_reference_epochs)
    index = sum(1 for b in bounds if epoch >= b)
    return float(optim.lr_values[index])


def weight_decay_at(epoch: int, optim, epochs: int) -> float:
    """Coupled L2 coefficient of the 0-based `epoch`."""
    if optim.weight_decay_until_epoch is None:
        return optim.weight_decay
    off = scaled_boundary(optim.weight_decay_until_epoch, epochs,
                          optim.schedule_reference_epochs)
    if optim.weight_decay_until_epoch == 0:
        off = 0
    return 0.0 if epoch >= off else optim.weight_decay


# -------------------------------------------------------------------------- optimizer
class _CoupledL2:
    """Mixin for a Keras optimizer: kernels (rank >= 2 variables) get a coupled L2 term
    `g' = g + l2 * w` before the optimizer's own update (Caffe's weight decay), and the
    layers added on top of a backbone get their own learning rate.

    Variables whose `path` is in `head_paths` train at `lr * head_lr_ratio`, the others
    at `lr * backbone_lr_scale` (when `head_paths` is empty every variable uses `lr`).
    Biases and normalisation parameters (rank 1) are not decayed. `l2` and
    `backbone_lr_scale` are non-trainable variables, so a callback can change them
    between epochs without retracing (`backbone_lr_scale = 0`: head-only warm-up).

    Args:
      l2: initial L2 coefficient (>= 0).
      head_paths: `keras.Variable.path` of every new-layer variable.
      head_lr_ratio: learning-rate multiplier of those variables (> 0).
    """

    def __init__(self, l2=0.0, head_paths=(), head_lr_ratio=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(head_lr_ratio, (int, float)) or not head_lr_ratio > 0:
            raise ValueError(f"lr_classifier_ratio: expected a number > 0, received "
                             f"{head_lr_ratio!r}")
        with keras.name_scope(self.name, caller=self):
            self.l2 = keras.Variable(float(l2), name="l2", dtype="float32",
                                     trainable=False, aggregation="only_first_replica")
            self.backbone_lr_scale = keras.Variable(
                1.0, name="backbone_lr_scale", dtype="float32", trainable=False,
                aggregation="only_first_replica")
        self._initial_l2 = float(l2)
        self.head_paths = tuple(str(p) for p in head_paths)
        self.head_lr_ratio = float(head_lr_ratio)
        self._is_head = []

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        heads = set(self.head_paths)
        self._is_head = [v.path in heads for v in variables]
        missing = heads - {v.path for v in variables}
        if missing:
            raise ValueError(f"head_paths: no trainable variable has the path(s) "
                             f"{sorted(missing)[:5]}")

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) >= 2:
            l2 = keras.ops.cast(self.l2, variable.dtype)
            gradient = keras.ops.add(gradient, keras.ops.multiply(l2, variable))
        if self.head_paths:
            if self._is_head[self._get_variable_index(variable)]:
                learning_rate = keras.ops.multiply(learning_rate, self.head_lr_ratio)
            else:
                learning_rate = keras.ops.multiply(
                    learning_rate, keras.ops.cast(self.backbone_lr_scale,
                                                  keras.ops.dtype(learning_rate)))
                # A backbone at rate 0 (head-only warm-up) is frozen: its gradient does
                # not reach the momentum buffer either, as for a PyTorch parameter that
                # is left out of the optimizer, so the warm-up's gradients (taken under a
                # head that is still random) are not released as one large step when
                # the backbone starts to train.
                live = keras.ops.cast(keras.ops.greater(self.backbone_lr_scale, 0.0),
                                      gradient.dtype)
                gradient = keras.ops.multiply(gradient, live)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self._initial_l2
        config["head_paths"] = list(self.head_paths)
        config["head_lr_ratio"] = self.head_lr_ratio
        return config


class _RateOutsideMomentumSGD(keras.optimizers.SGD):
    """Momentum SGD with the learning rate applied outside the momentum buffer, the
    update of PyTorch's `torch.optim.SGD` (dampening 0) that wsolevaluation trains with:

        v <- momentum * v + g;  w <- w - lr * v                  (plain)
        v <- momentum * v + g;  w <- w - lr * (g + momentum * v)  (Nesterov)

    Keras' own SGD keeps the rate inside the buffer (`m <- momentum * m - lr * g;
    w <- w + m`). At a constant rate the two are the same; when the rate changes they
    are not: after a 10x step down Keras' buffer still moves the weights at the old rate
    for about 1 / (1 - momentum) steps, while the gradient that would correct the drift
    is already 10x weaker, so the training loss rises at every step of the schedule.
    Here the buffer holds gradients only, so a new rate takes effect at once (for a
    cosine schedule the difference is small but the same argument holds). The
    backbone during a head-only warm-up is frozen by `_CoupledL2` (zero gradient, so its
    buffer stays empty), as a PyTorch parameter left out of the optimizer.
    """

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, keras.ops.multiply(gradient, learning_rate))
            return
        momentum = keras.ops.cast(self.momentum, variable.dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        self.assign(buffer, keras.ops.add(keras.ops.multiply(buffer, momentum), gradient))
        step = buffer
        if self.nesterov:
            step = keras.ops.add(gradient, keras.ops.multiply(buffer, momentum))
        self.assign_sub(variable, keras.ops.multiply(step, learning_rate))


@keras.saving.register_keras_serializable(package="keras_has")
class L2SGD(_CoupledL2, _RateOutsideMomentumSGD):
    """Momentum SGD with `_CoupledL2`'s weight decay and head learning rate: Caffe's and
    PyTorch's update, `g' = g + l2 * w`, `v <- momentum * v + g'`, `w <- w - lr * v`
    (see `_RateOutsideMomentumSGD`; the head multiplier and the warm-up scale multiply
    `lr` in the last step only). Other arguments are `keras.optimizers.SGD`'s.
    """


@keras.saving.register_keras_serializable(package="keras_has")
class L2Adam(_CoupledL2, keras.optimizers.Adam):
    """Adam with `_CoupledL2`'s weight decay (added to the gradient before the moment
    estimates) and head learning rate. Other arguments are `keras.optimizers.Adam`'s.
    """


def make_optimizer(optim, epochs: int, head_paths=()):
    """The optimizer that `optim` (an `OptimConfig`) names, at its epoch-0 values;
    `head_paths` (see `head_variable_paths`) train at `optim.lr_classifier_ratio` times
    the rate."""
    common = dict(l2=weight_decay_at(0, optim, epochs),
                  learning_rate=learning_rate_at(0, optim, epochs),
                  head_paths=head_paths, head_lr_ratio=optim.lr_classifier_ratio)
    if optim.optimizer == "adam":
        return L2Adam(beta_1=optim.momentum, **common)
    return L2SGD(momentum=optim.momentum, nesterov=optim.nesterov, **common)


def head_variable_paths(model) -> tuple[str, ...]:
    """Paths of the trainable variables outside the model's `*_backbone` sub-model.

    Empty when the model has no backbone sub-model (every layer is then "new" and
    trains at the base rate).

    Raises:
      ValueError: a head variable shares its path with a backbone variable.
    """
    backbones = [layer for layer in model.layers if layer.name.endswith("_backbone")]
    if not backbones:
        return ()
    inside = {id(v) for b in backbones for v in b.trainable_variables}
    backbone_paths = {v.path for b in backbones for v in b.trainable_variables}
    heads = tuple(v.path for v in model.trainable_variables if id(v) not in inside)
    clash = sorted(set(heads) & backbone_paths)
    if clash or len(set(heads)) != len(heads):
        raise ValueError(f"model {model.name}: new-layer variables share paths with the "
                         f"backbone's ({clash[:5]}); rename the added layers")
    return heads


def freeze_backbone_batchnorm(model) -> int:
    """Sets `trainable=False` on the backbone's BatchNormalization layers; returns the count."""
    count = 0
    for layer in model.layers:
        if not layer.name.endswith("_backbone"):
            continue
        for inner in layer._flatten_layers(include_self=False):
            if isinstance(inner, keras.layers.BatchNormalization):
                inner.trainable = False
                count += 1
    return count


def _inner_optimizer(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


class EpochSchedule(keras.callbacks.Callback):
    """Sets the learning rate and the L2 coefficient at the start of every epoch (and,
    for the cosine schedule, the rate before every step).

    Both are pure functions of the (fractional) epoch (`learning_rate_at`,
    `weight_decay_at`), so a resumed run gets the right values. Adds `learning_rate`
    (the epoch's first) and `weight_decay` to the epoch logs (CSV and TensorBoard).
    """

    def __init__(self, optim, epochs: int):
        super().__init__()
        self.optim = optim
        self.epochs = epochs
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        optimizer = _inner_optimizer(self.model.optimizer)
        optimizer.learning_rate = learning_rate_at(epoch, self.optim, self.epochs)
        optimizer.l2.assign(weight_decay_at(epoch, self.optim, self.epochs))
        optimizer.backbone_lr_scale.assign(self.backbone_scale_at(epoch))

    def backbone_scale_at(self, epoch: int) -> float:
        """0 during the head-only warm-up (`optim.warmup_epochs`), else 1."""
        return 0.0 if epoch < self.optim.warmup_epochs else 1.0

    def on_train_batch_begin(self, batch, logs=None):
        steps = (self.params or {}).get("steps")
        if self.optim.lr_schedule != "cosine" or not steps:
            return
        _inner_optimizer(self.model.optimizer).learning_rate = learning_rate_at(
            self._epoch + batch / steps, self.optim, self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = learning_rate_at(epoch, self.optim, self.epochs)
            logs["weight_decay"] = weight_decay_at(epoch, self.optim, self.epochs)
            logs["backbone_lr_scale"] = self.backbone_scale_at(epoch)
