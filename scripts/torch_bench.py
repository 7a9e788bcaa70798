"""PyTorch train and inference steps for ``scripts/benchmark_models.py --torch``.

Benchmark-only: needs torch (``pip install -e .[bench]``) and ``torch_models`` (the
architectures). Settings:

* ``float32``: channels_last float32;
* ``bfloat16``: channels_last, forward under ``torch.autocast("cpu", torch.bfloat16)``;
* ``compile float32`` / ``compile bfloat16``: as above with inference through
  ``torch.compile`` (the train step is not timed: compiling the backward pass of these
  nets takes minutes on two cores).

Train: SGD (lr 0.01, momentum 0.9), cross-entropy, ``zero_grad`` / ``backward`` / ``step``.
Inference: ``model.eval()`` under ``torch.inference_mode()``.

PyTorch runs in a child process (``Worker``), never in the process that runs TensorFlow:
in one process the two runtimes' thread pools (TensorFlow's Eigen pool, PyTorch's OpenMP
pool) compete for the same cores and slowed PyTorch by over 10x. The child blocks on a
pipe while Keras runs and the parent blocks while PyTorch runs, so steps still alternate.

The worker runs with ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it: with
libgomp's default spin-waiting, PyTorch's OpenMP barriers collapse when other processes
share the cores (MobileNetV2 training measured 0.6 img/s spinning against 11.8 passive on
a loaded 2-core machine); on an idle machine spinning may be a few percent faster.
"""
import os
import pickle
import struct
import subprocess
import sys
import tempfile

import numpy as np

MODEL_NAMES = ("alexnet_gap", "googlenet_gap", "vgg16_gap", "resnet50_gap", "mobilenetv2_gap", "inceptionv3_gap")
SETTINGS = ("float32", "bfloat16", "compile float32", "compile bfloat16")


def send_message(stream, obj):
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def receive_message(stream):
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the process at the other end of the pipe closed it")
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))


def serve_runner(make_runner):
    """The loop of a benchmark worker process (``torch_end_to_end.py``,
    ``keras_eval_worker.py``): the first message from stdin builds the runner
    (``make_runner(message)``) and is answered with ``runner.info()``; then each
    ``(command, kwargs)`` is answered with ``runner.command(**kwargs)``, or with the error's
    text and traceback, until ``("quit", None)``. Prints go to stderr; stdout is the pipe."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    runner = make_runner(receive_message(stdin))
    send_message(stdout, runner.info())
    while True:
        command, args = receive_message(stdin)
        if command == "quit":
            return
        try:
            reply = getattr(runner, command)(**args)
        except Exception as error:  # noqa: BLE001  (reported to the parent)
            import traceback

            reply = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        send_message(stdout, reply)


class Worker:
    """A child process holding one model's PyTorch versions (one per setting).

    Args:
        name: a model of ``MODEL_NAMES``.
        settings: a sequence of ``SETTINGS``.
        x: float32 images ``[B, H, W, 3]``; y: int labels ``[B]``.
        num_classes: classifier outputs.

    ``info`` (a line: versions, threads), ``counts`` ((trainable parameters, batch-norm
    moving statistics)) and ``steps(setting)`` -> (train callable or None, infer callable).
    """

    def __init__(self, name, settings, x, y, num_classes):
        unknown = [s for s in settings if s not in SETTINGS]
        if name not in MODEL_NAMES or unknown:
            raise ValueError(f"PyTorch worker: unknown model {name!r} or settings {unknown}; "
                             f"models {MODEL_NAMES}, settings {SETTINGS}")
        with tempfile.NamedTemporaryFile(suffix=".npz", delete=False) as f:
            np.savez(f, x=x, y=y)
            self._data = f.name
        env = dict(os.environ, KERAS_HAS_TORCH_WORKER="1")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), name, ",".join(settings), self._data, str(num_classes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self.info, self.counts = receive_message(self._process.stdout)

    def _call(self, command, setting):
        send_message(self._process.stdin, (command, setting))
        reply = receive_message(self._process.stdout)
        if isinstance(reply, str):
            raise RuntimeError(f"PyTorch worker failed on {command} {setting}: {reply}")
        return reply

    def steps(self, setting):
        train = None if setting.startswith("compile") else (lambda: self._call("train", setting))
        return train, (lambda: self._call("infer", setting))

    def close(self):
        if self._process.poll() is None:
            send_message(self._process.stdin, ("quit", None))
            self._process.wait(timeout=60)
        os.unlink(self._data)


def _torch_steps(torch, model_fn, setting, x, y):
    """(train or None, infer) closures of one PyTorch model under ``setting``."""
    from torch import nn

    torch.manual_seed(0)
    model = model_fn().to(memory_format=torch.channels_last)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.from_numpy(y.astype(np.int64))
    bf16 = setting.endswith("bfloat16")
    compiled = setting.startswith("compile")

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    if compiled:
        train = None
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def train():
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(images).float(), labels)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

    eval_model = torch.compile(model) if compiled else model

    def infer():
        model.eval()
        with torch.inference_mode(), autocast():
            return float(eval_model(images).float().sum())

    return train, infer


def _serve(name, settings, data, num_classes):
    import torch

    from torch_models import MODELS, parameter_counts

    arrays = np.load(data)
    x, y = arrays["x"], arrays["y"]
    info = (f"torch {torch.__version__} (own process), {torch.get_num_threads()} threads, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    counts = parameter_counts(MODELS[name](num_classes))
    steps = {s: _torch_steps(torch, lambda: MODELS[name](num_classes), s, x, y) for s in settings}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    send_message(stdout, (info, counts))
    while True:
        command, setting = receive_message(stdin)
        if command == "quit":
            return
        try:
            send_message(stdout, steps[setting][0 if command == "train" else 1]())
        except Exception as error:  # noqa: BLE001 - reported to the parent
            send_message(stdout, f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2].split(","), sys.argv[3], int(sys.argv[4]))
