"""PyTorch train and inference steps for ``scripts/benchmark_models.py --torch``.

Benchmark-only: imports torch (``pip install -e .[bench]``) and ``torch_models`` (the
architectures). Settings:

* ``float32``: channels_last float32;
* ``bfloat16``: channels_last, forward under ``torch.autocast("cpu", torch.bfloat16)``;
* ``compile float32`` / ``compile bfloat16``: as above with inference through
  ``torch.compile`` (the train step is not timed: compiling the backward pass of these
  nets takes minutes on two cores).

Train: SGD (lr 0.01, momentum 0.9), cross-entropy, ``zero_grad`` / ``backward`` / ``step``.
Inference: ``model.eval()`` under ``torch.inference_mode()``.
"""
import numpy as np
import torch
from torch import nn

from torch_models import MODELS, parameter_counts

SETTINGS = ("float32", "bfloat16", "compile float32", "compile bfloat16")


def describe():
    """One line: the PyTorch version, threads and CPU capability in use."""
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, mkldnn {torch.backends.mkldnn.is_available()}"
    )


def check_parameter_counts(name, keras_model, num_classes):
    """Raises AssertionError unless the PyTorch model has as many trainable parameters and
    batch-norm moving statistics as ``keras_model`` (trainable / non-trainable weights)."""
    torch_counts = parameter_counts(MODELS[name](num_classes))
    keras_counts = (
        sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights),
        sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights),
    )
    if torch_counts != keras_counts:
        raise AssertionError(
            f"{name}: PyTorch model has (trainable, moving statistics) = {torch_counts}, "
            f"the Keras model {keras_counts}: the architectures differ"
        )


def steps(name, setting, x, y, num_classes):
    """(train step or None, inference step) callables for model ``name`` under ``setting``.

    Args:
        x: float32 numpy images ``[B, H, W, 3]`` (transposed to ``[B, 3, H, W]`` here).
        y: int labels ``[B]``.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown PyTorch setting {setting!r}; expected one of {SETTINGS}")
    torch.manual_seed(0)
    model = MODELS[name](num_classes).to(memory_format=torch.channels_last)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.from_numpy(y.astype(np.int64))
    bf16 = setting.endswith("bfloat16")
    compiled = setting.startswith("compile")

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    train = None
    if not compiled:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def train():
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(images).float(), labels)
            loss.backward()
            optimizer.step()
            return float(loss)

    eval_model = torch.compile(model) if compiled else model

    def infer():
        model.eval()
        with torch.inference_mode(), autocast():
            return eval_model(images).float().numpy()

    return train, infer
