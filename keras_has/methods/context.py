"""The training step's labels, seen by the method layers that need them.

ACoL and SPG compute their training-time erasing and guidance from the ground-truth
class, and CutMix's loss needs the pasted labels; a Keras functional model only sees
images. `keras_has.methods.prepare_training` wraps the model's `train_step` so that,
while that step is traced, `current()` returns a `StepContext` with the step's labels
(and CutMix's pasted labels and weight); outside a training step it returns None and
the layers behave as at inference (the top-1 class). The context is thread-local, so
the replica threads of `tf.distribute.MirroredStrategy` each see their own labels.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading

__all__ = ["StepContext", "current", "step_context"]

_LOCAL = threading.local()


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Tensors of one training step (per replica).

    Attributes:
      labels: int `[B]` ground-truth classes of the step's images.
      mix_labels: int `[B]` classes of the pasted images (CutMix) or None.
      mix_weight: float32 scalar weight of `labels` in the loss (CutMix) or None.
    """

    labels: object
    mix_labels: object = None
    mix_weight: object = None


def current() -> StepContext | None:
    """The innermost active `StepContext` of this thread, or None."""
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


@contextlib.contextmanager
def step_context(context: StepContext):
    """Makes `context` current in this thread for the duration of the block."""
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    stack.append(context)
    try:
        yield context
    finally:
        stack.pop()
