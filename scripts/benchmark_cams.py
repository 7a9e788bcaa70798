"""Speed of keras-has's CAM methods against pytorch-grad-cam on the same architectures.

For each model (``keras.applications`` ResNet50 and MobileNetV2, weights=None, 1000
classes, softmax head) and each method, maps/s of
  keras   ``keras_has.localize.cams.compute_cams(model, images, method=...)`` (default
          layer: the feature map feeding the head, 7x7 at 224; top-1 classes), the maps
          fetched to NumPy;
  torch   pytorch-grad-cam's class of the same method on the same architecture written in
          torch.nn (scripts/torch_models.py: ``resnet50_gap(1000, last_stride=2)``,
          ``mobilenetv2_gap(1000, block13_stride=2)``, the standard strides; torchvision
          is not used), target layer the same feature map, ``ClassifierOutputTarget`` of
          the top-1 class, in its own process (``OMP_WAIT_POLICY=PASSIVE``) as in
          scripts/torch_bench.py;
and keras / torch (above 1: keras-has is faster). The two are timed in alternation, one
call each per round, after one warm-up call each (tracing); the figure is the median
over rounds. Weights differ (both random): the work does not depend on them.

What each side computes per batch: keras-has runs one forward pass and, for the gradient
methods, one backward pass through the head only (from the class score to the feature
map); pytorch-grad-cam's ``loss.backward()`` runs back to the input. Score-CAM and
Ablation-CAM cost one forward pass per (image, channel) on both sides (2048 channels for
ResNet50, 1280 for MobileNetV2): time them with small settings (--batch=1, a small
--size); ``cam`` (plain CAM) has no pytorch-grad-cam counterpart and is timed alone.

Usage (needs ``pip install -e .[bench]``: torch and grad-cam):
  python scripts/benchmark_cams.py                                   # the protocol
  python scripts/benchmark_cams.py --methods=scorecam,ablationcam --batch=1 --size=96 --rounds=1
"""
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from torch_bench import receive_message, send_message  # noqa: E402  (scripts/)

MODELS = ("resnet50", "mobilenetv2")
METHODS = ("cam", "gradcam", "gradcam_plus_plus", "xgradcam", "layercam", "eigencam",
           "scorecam", "ablationcam")
NUM_CLASSES = 1000


def _torch_model(name):
    from torch_models import mobilenetv2_gap, resnet50_gap

    if name == "resnet50":
        model = resnet50_gap(NUM_CLASSES, last_stride=2)
    else:
        model = mobilenetv2_gap(NUM_CLASSES, block13_stride=2)
    return model.eval(), model[-2]  # the last block / ReLU6 before the GAP head


def _serve(name, data, cam_batch_size):
    from grad_cam_torch import import_grad_cam, torch_cams  # first: sets TQDM_DISABLE before torch loads tqdm

    import torch
    from torch_models import parameter_counts

    grad_cam, note = import_grad_cam()
    torch.manual_seed(0)
    model, target = _torch_model(name)
    images = torch.from_numpy(np.ascontiguousarray(np.load(data).transpose(0, 3, 1, 2)))
    with torch.no_grad():
        class_ids = model(images).argmax(dim=1).numpy()
    info = (f"{note}; {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
            f"{os.environ.get('OMP_WAIT_POLICY')}", parameter_counts(model))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    send_message(stdout, info)
    while True:
        method = receive_message(stdin)
        if method is None:
            return
        try:
            start = time.perf_counter()
            maps = torch_cams(grad_cam, method, model, target, images, class_ids, cam_batch_size)
            send_message(stdout, (time.perf_counter() - start, maps.shape))
        except Exception as error:  # noqa: BLE001 - reported to the parent
            send_message(stdout, f"{type(error).__name__}: {error}")


class TorchWorker:
    """A child process with one PyTorch model and pytorch-grad-cam; ``time(method)``
    returns the seconds of one batch's maps."""

    def __init__(self, name, images, cam_batch_size):
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".npy", delete=False) as f:
            np.save(f, images)
            self._data = f.name
        env = dict(os.environ, KERAS_HAS_TORCH_WORKER="1")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.setdefault("TQDM_DISABLE", "1")
        env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)),
                                             env.get("PYTHONPATH", "")])
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", name, self._data, str(cam_batch_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.info, self.counts = receive_message(self._process.stdout)

    def time(self, method):
        send_message(self._process.stdin, method)
        reply = receive_message(self._process.stdout)
        if isinstance(reply, str):
            raise RuntimeError(f"PyTorch worker failed on {method}: {reply}")
        return reply[0]

    def close(self):
        if self._process.poll() is None:
            send_message(self._process.stdin, None)
            self._process.wait(timeout=120)
        os.unlink(self._data)


# ------------------------------------------------------------------------- Keras

def _keras_model(name, size):
    import keras

    build = keras.applications.ResNet50 if name == "resnet50" else keras.applications.MobileNetV2
    keras.utils.set_random_seed(0)
    return build(weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES)


def _cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv):
    from absl import flags

    flags.DEFINE_list("models", list(MODELS), f"Any of {MODELS}.")
    flags.DEFINE_list("methods", ["cam", "gradcam", "gradcam_plus_plus", "xgradcam", "layercam",
                                  "eigencam"], f"Any of {METHODS}.")
    flags.DEFINE_integer("batch", 32, "Images per batch.", lower_bound=1)
    flags.DEFINE_integer("size", 224, "Image height and width.", lower_bound=32)
    flags.DEFINE_integer("rounds", 3, "Timed rounds (median reported).", lower_bound=1)
    flags.DEFINE_integer("cam_batch_size", 32, "Masked / ablated images per forward pass "
                         "(scorecam, ablationcam), both tools.", lower_bound=1)
    flags.DEFINE_boolean("torch", True, "Also time pytorch-grad-cam.")
    flags.FLAGS(argv)
    cfg = flags.FLAGS
    unknown = [m for m in cfg.models if m not in MODELS] + [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown models / methods {unknown}; models {MODELS}, methods {METHODS}")

    import keras
    import tensorflow as tf

    from keras_has.localize import cams

    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}; batch {cfg.batch}, "
          f"{cfg.size}x{cfg.size}, {cfg.rounds} round(s), cam_batch_size {cfg.cam_batch_size}")
    images = np.random.default_rng(0).normal(size=(cfg.batch, cfg.size, cfg.size, 3)).astype(np.float32)
    for name in cfg.models:
        model = _keras_model(name, cfg.size)
        worker = None
        if cfg.torch:
            worker = TorchWorker(name, images, cfg.cam_batch_size)
            print(f"\n{name}: keras {model.count_params():,} parameters; torch "
                  f"{sum(worker.counts):,} (trainable + batch-norm statistics; Keras counts "
                  f"them alike); {worker.info}")
        else:
            print(f"\n{name}: keras {model.count_params():,} parameters")
        layer = cams.plan_cams(model, "gradcam").layer
        print(f"  CAM layer {layer.path} {layer.shape[1:]}")

        def keras_run(method):
            start = time.perf_counter()
            cams.compute_cams(model, images, method=method, batch_size=cfg.cam_batch_size).numpy()
            return time.perf_counter() - start

        print(f"  {'method':<18} {'keras maps/s':>13} {'torch maps/s':>13} {'keras/torch':>12}")
        for method in cfg.methods:
            timed = worker is not None and method != "cam"
            keras_run(method)
            if timed:
                worker.time(method)
            k_times, t_times = [], []
            for _ in range(cfg.rounds):
                k_times.append(keras_run(method))
                if timed:
                    t_times.append(worker.time(method))
            k_rate = cfg.batch / statistics.median(k_times)
            if timed:
                t_rate = cfg.batch / statistics.median(t_times)
                print(f"  {method:<18} {k_rate:>13.3g} {t_rate:>13.3g} {k_rate / t_rate:>12.2f}", flush=True)
            else:
                print(f"  {method:<18} {k_rate:>13.3g} {'-':>13} {'-':>12}", flush=True)
        if worker is not None:
            worker.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main(sys.argv)
