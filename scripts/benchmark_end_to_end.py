"""End to end against PyTorch: a fine-tuning epoch and a localization evaluation pass on
one WSOL folder, keras-has's own code paths against the same work written the way
clovaai/wsolevaluation's trainer and evaluator are in PyTorch (``torch_end_to_end.py``).

Same data (one WSOL metadata folder: ``--source``, default ``../shared/data/pets3``; or
``--write_synthetic=DIR`` writes the built-in synthetic dataset there as JPEGs and uses
it), same architecture (``--models``: MobileNetV2-GAP by default, ResNet50-GAP too;
``scripts/torch_models.py`` with Keras' padding, the Keras weights copied in), the
weights' ImageNet preprocessing, batch 32, ``--image_size`` crops (224) after a resize to
``round(S * 256 / 224)``, random flips, Hide-and-Seek as ``flags/finetune_mobilenetv2_has.cfg``
sets it, SGD with momentum and weight decay, bfloat16 where each framework does it best
(``--precision=bfloat16``: keras-has's ``mixed_bfloat16`` policy, PyTorch's CPU autocast).

* **Fine-tuning epoch.** keras-has: ``keras_has.train.train`` (the ``train`` command's
  library) with the ``TrainConfig`` that ``--flagfile_train`` gives (overridden: source,
  image size, batch, epochs, precision, no warm-up so every epoch trains the whole
  network, no evaluation split, a fresh output folder), so the epoch is the real one:
  tf.data pipeline, fit's steps, per-epoch checkpoint, backup, CSV and TensorBoard
  writes, and fit's change of tf.data iterator between epochs. A Keras epoch is timed
  from its first batch to the next epoch's first batch. A callback injected into its
  ``fit`` (the only change to the path, here in the script) runs the other settings at
  that moment, so everything alternates: Keras epoch, PyTorch epoch (``DataLoader`` with
  one worker per core, Hide-and-Seek per cell in Python, one ``torch.save`` checkpoint),
  then the parts of keras-has's epoch alone: the tf.data training pipeline alone (and its
  read + decode, and read + decode + resize, alone), and fit's compiled train step
  (``model.train_function``) on the epoch's batches cached in memory (each part's
  iterator teardown timed apart: it can wait seconds for tf.data's autotuning thread). Round 0 is a
  warm-up (tracing) and is not counted; one more Keras epoch follows the last timed one.
  ``--fixed_steps`` gives ``train`` a ``steps_per_epoch`` (a repeated pipeline, one
  iterator for the whole run), which ``train`` now does by default (no hiding schedule).
* **Evaluation pass** over the test split, same weights in both (the Keras model after
  its epochs, copied into PyTorch): keras-has's ``run_localization`` with the ``evaluate``
  command's settings on the model ``load_for_evaluation`` reads from the run's
  ``model.keras`` (round 0: the whole ``evaluate_model_file`` call, cold), against
  wsolevaluation's evaluator semantics. Each round times it twice: in processes of their
  own started after training (``keras_eval_worker.py``, set up as ``keras-has evaluate``
  sets up its process, and a fresh ``torch_end_to_end.py``), the headline ratio, as a user
  runs an evaluation; and inside the two training processes (keras-has's per-epoch
  localization pass). PyTorch's side: one ``findContours`` per threshold; both sweep the
  thresholds ``np.arange(0, 1, --cam_curve_interval)``, 0.01 as keras-has's ``evaluate``
  (their command line uses 0.001). Parts of keras-has's pass alone: the eval pipeline, the
  forward (``compute_cams_and_logits``) on cached batches, and the host side (resize,
  normalise, ``LocalizationEvaluator.accumulate``) on cached CAMs, and the same pass with
  its tf.data iterator kept alive (the iterator's destruction timed apart). MaxBoxAccV2 of
  both is printed, keras-has's also with ``box_rule="wsolevaluation"`` (their contour
  rule), and wsolevaluation's evaluator run on keras-has's own CAMs.

Prints images/s (median over the rounds), the ratio keras-has / PyTorch, where each
spends its time (with the stalls at keras-has's epoch changes and at tf.data iterator
destruction), the evaluation's ceiling (PyTorch's pass over keras-has's forward pass
alone: no work outside the forward pass can take the ratio past it), the CPU and the
load average. The last line is
``train epoch ratio X.XX, evaluation ratio Y.YY (keras-has / PyTorch)`` (of the first
of ``--models``).

Usage:
  pip install -e .[bench]        # PyTorch (torch==2.13.0 here: the local CPU wheel)
  python scripts/benchmark_end_to_end.py --quick            # a few minutes
  python scripts/benchmark_end_to_end.py                    # pets3, 3 rounds
  python scripts/benchmark_end_to_end.py --models=mobilenetv2_gap,resnet50_gap
  python scripts/benchmark_end_to_end.py --write_synthetic=/tmp/synthetic_wsol --quick
"""
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import cpu_line  # noqa: E402
from torch_bench import receive_message as _receive, send_message as _send  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("source", os.path.join("..", "shared", "data", "pets3"), "WSOL metadata folder.")
flags.DEFINE_string("write_synthetic", None, "Write the built-in synthetic dataset to this folder as a "
                    "WSOL folder of JPEGs (train and test splits) and benchmark on it instead of --source.")
flags.DEFINE_integer("synthetic_image_size", 64, "Image side of the written synthetic dataset (the "
                     "built-in default config's 64).", lower_bound=32)
flags.DEFINE_integer("synthetic_train", 320, "Training images of the written synthetic dataset.", lower_bound=1)
flags.DEFINE_integer("synthetic_test", 160, "Test images of the written synthetic dataset.", lower_bound=1)
flags.DEFINE_list("models", ["mobilenetv2_gap"], "Models: mobilenetv2_gap, resnet50_gap.")
flags.DEFINE_string("flagfile_train", "finetune_mobilenetv2_has", "The train command's flagfile the "
                    "keras-has side runs (the model is overridden by --models).")
flags.DEFINE_integer("image_size", 224, "Crop size S.", lower_bound=32)
flags.DEFINE_integer("batch", 32, "Batch size.", lower_bound=1)
flags.DEFINE_integer("rounds", 3, "Timed rounds (after one warm-up round); medians are reported.", lower_bound=1)
flags.DEFINE_enum("precision", "bfloat16", ["bfloat16", "float32"], "bfloat16: keras-has mixed_bfloat16, "
                  "PyTorch CPU autocast bfloat16; float32: both float32.")
flags.DEFINE_integer("workers", os.cpu_count(), "PyTorch DataLoader workers (one per core).", lower_bound=0)
flags.DEFINE_float("cam_curve_interval", 0.01, "Step of the CAM threshold sweep, both frameworks.")
flags.DEFINE_integer("train_images", None, "Use this many training images (an evenly spaced subset "
                     "written as a WSOL folder of links); default all.", lower_bound=1)
flags.DEFINE_integer("test_images", None, "Use this many test images; default all.", lower_bound=1)
flags.DEFINE_string("train_split", "train", "Training split.")
flags.DEFINE_string("test_split", "test", "Evaluated split (boxes).")
flags.DEFINE_string("work_dir", None, "Where runs and subsets go (default: a temporary folder, removed).")
flags.DEFINE_boolean("fixed_steps", False, "Give keras-has's train --steps_per_epoch (the batches of one "
                     "pass): its pipeline is then repeated and fit keeps one tf.data iterator for the whole run "
                     "instead of one per epoch (a configuration of the library, not a code change).")
flags.DEFINE_boolean("quick", False, "96 training / 64 test images, 1 round: a few minutes, not the protocol.")

_TORCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_end_to_end.py")
_KERAS_EVAL_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_eval_worker.py")


# --------------------------------------------------------------------------- data folders


def write_synthetic_folder(root, image_size, train, test, seed=0):
    """The built-in dataset's examples (``generate_arrays``) as a WSOL folder of JPEGs."""
    from PIL import Image

    from keras_has.data import synthetic

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "class_names.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n in synthetic.CLASS_NAMES))
    for split, count in (("train", train), ("test", test)):
        arrays = synthetic.generate_arrays(seed, split, count, image_size)
        meta = os.path.join(root, "metadata", split)
        os.makedirs(meta, exist_ok=True)
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        rows = {k: [] for k in ("image_ids", "class_labels", "image_sizes", "localization")}
        for image, label, box, image_id in zip(arrays["image"], arrays["label"], arrays["object_box"],
                                               arrays["image_id"]):
            rel = f"{split}/{image_id.decode() if isinstance(image_id, bytes) else image_id}.jpg"
            Image.fromarray(image).save(os.path.join(root, "images", rel), quality=95)
            rows["image_ids"].append(rel)
            rows["class_labels"].append(f"{rel},{int(label)}")
            rows["image_sizes"].append(f"{rel},{image.shape[1]},{image.shape[0]}")
            rows["localization"].append(f"{rel},{','.join(str(int(v)) for v in box)}")
        for name, lines in rows.items():
            with open(os.path.join(meta, f"{name}.txt"), "w") as f:
                f.write("".join(line + "\n" for line in lines))
    return root


def write_subset_folder(source, root, counts):
    """A WSOL folder at ``root`` whose ``images`` links to ``source``'s and whose splits
    keep an evenly spaced subset: ``counts`` maps a split to its image count (None: all)."""
    os.makedirs(os.path.join(root, "metadata"), exist_ok=True)
    if not os.path.exists(os.path.join(root, "images")):
        os.symlink(os.path.abspath(os.path.join(source, "images")), os.path.join(root, "images"))
    if os.path.exists(os.path.join(source, "class_names.txt")):
        shutil.copy(os.path.join(source, "class_names.txt"), root)
    for split, count in counts.items():
        src, dst = os.path.join(source, "metadata", split), os.path.join(root, "metadata", split)
        os.makedirs(dst, exist_ok=True)
        with open(os.path.join(src, "image_ids.txt")) as f:
            ids = [line.rstrip("\n") for line in f if line.strip()]
        if count is not None and count < len(ids):
            ids = [ids[int(i * len(ids) / count)] for i in range(count)]
        keep = set(ids)
        for name in ("image_ids", "class_labels", "image_sizes", "localization"):
            path = os.path.join(src, f"{name}.txt")
            if os.path.exists(path):
                with open(path) as f:
                    lines = [line for line in f if line.strip() and line.split(",")[0].rstrip("\n") in keep]
                with open(os.path.join(dst, f"{name}.txt"), "w") as f:
                    f.writelines(lines)
    return root


# --------------------------------------------------------------------------- config


def train_config(model_name, source, output_dir, epochs, steps_per_epoch=None):
    """The ``TrainConfig`` of ``--flagfile_train`` as the ``train`` command parses it, with
    this benchmark's overrides."""
    from keras_has.cli import config_flags
    from keras_has.cli.flagfiles import expand_flagfiles
    from keras_has.config import TrainConfig
    from keras_has.data import preprocessing as prep_lib
    from keras_has.models.backbones import imagenet_weights_path

    kind = model_name.replace("_gap", "")
    pretrained = os.path.exists(imagenet_weights_path(kind))
    args = [f"--flagfile={FLAGS.flagfile_train}", f"--model={model_name}", f"--source={source}",
            f"--image_size={FLAGS.image_size}", f"--global_batch_size={FLAGS.batch}", f"--epochs={epochs}",
            "--warmup_epochs=0", "--eval_split=none", "--eval_every=0", "--best_metric=",
            f"--mixed_precision={'mixed_bfloat16' if FLAGS.precision == 'bfloat16' else 'none'}",
            f"--output_dir={output_dir}", "--verbose=0", "--seed=0", f"--train_split={FLAGS.train_split}",
            f"--steps_per_epoch={steps_per_epoch or 'none'}"]
    if not pretrained:  # no cached ImageNet weights: random init, the weights' preprocessing kept
        args += ["--model_arg=weights=None",
                 f"--preprocessing={prep_lib.resolve_mode('auto', model_name, True)}"]
    values = flags.FlagValues()
    config_flags.define_config_flags(TrainConfig, values)
    values(["train"] + expand_flagfiles(args))
    return config_flags.config_from_flags(TrainConfig, values), pretrained


# --------------------------------------------------------------------------- Keras <-> torch


def _weighted_layers(model, seen=None):
    """Each weighted layer once, in order (a nested model's layers in its place; a layer
    reached twice, e.g. through a model that wraps another, is yielded the first time)."""
    seen = set() if seen is None else seen
    for layer in model.layers:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer, seen)
        elif layer.weights:
            yield layer


def keras_layers_for_torch(model):
    """The weighted layers of a keras_has GAP model in ``torch_models``' module order
    (ResNet's projection shortcut ``*_0_conv`` / ``*_0_bn`` after the block's ``*_3_bn``),
    as ``torch_end_to_end.load_keras_weights`` takes them."""
    out, held = [], {}
    for layer in _weighted_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kind = "depthwise"
        elif isinstance(layer, keras.layers.Conv2D):
            kind = "conv"
        elif isinstance(layer, keras.layers.BatchNormalization):
            kind = "bn"
        elif isinstance(layer, keras.layers.Dense):
            kind = "dense"
        else:
            raise ValueError(f"{model.name}: no PyTorch counterpart for layer {layer.name} ({type(layer).__name__})")
        entry = {"kind": kind, "name": layer.name,
                 "weights": {v.name.split("/")[-1]: np.asarray(v.numpy(), np.float32) for v in layer.weights}}
        block, _, rest = layer.name.rpartition("_0_")
        if block and rest in ("conv", "bn"):
            held.setdefault(block, []).append(entry)
            continue
        out.append(entry)
        if layer.name.endswith("_3_bn"):
            out += held.pop(layer.name[: -len("_3_bn")], [])
    if held:
        raise ValueError(f"{model.name}: shortcut layers without their block: {sorted(held)}")
    return out


class WorkerProcess:
    """A benchmark worker script (``torch_bench.serve_runner``) in a child process, given
    ``cfg`` first; each call blocks this process until the child answers."""

    def __init__(self, script, cfg, env=None):
        self._process = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, env=env)
        _send(self._process.stdin, cfg)
        self.info = _receive(self._process.stdout)

    def __call__(self, command, **args):
        _send(self._process.stdin, (command, args))
        reply = _receive(self._process.stdout)
        if isinstance(reply, str):
            raise RuntimeError(f"{os.path.basename(self._process.args[1])} failed on {command}: {reply}")
        return reply

    def close(self):
        if self._process.poll() is None:
            _send(self._process.stdin, ("quit", None))
            self._process.wait(timeout=120)


def torch_worker(cfg):
    """``torch_end_to_end.py`` in a child process (never TensorFlow's: the two thread
    pools would share the cores)."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return WorkerProcess(_TORCH_SCRIPT, cfg, env)


# --------------------------------------------------------------------------- timing


class Marker(keras.callbacks.Callback):
    """Records the time at its place in the callback list at every epoch end."""

    def __init__(self, times):
        super().__init__()
        self.times = times

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter())


class Alternation(keras.callbacks.Callback):
    """First callback of keras-has's fit. A Keras epoch is timed from its first batch to
    the next epoch's first batch (so the epoch-end checkpoint and log writes, the
    on_epoch_begin callbacks and fit's change of tf.data iterator count), or to the end of
    training; the other settings of the round (``run_round``) run at that moment, after
    fit has dropped the previous epoch's iterator. Run between two epochs instead, they
    would lengthen that iterator's life, and with it the stall that its destruction can
    cause in TensorFlow 2.21 (docs/design/performance.md, "End to end")."""

    def __init__(self, bench):
        super().__init__()
        self.bench = bench
        self.start = None
        self.step_time = 0.0

    def on_train_begin(self, logs=None):
        self.bench.on_train_begin(self.model)

    def _close_epoch(self):
        now = time.perf_counter()
        ckpt_end = self.bench.ckpt[1][-1]
        self.bench.keras_epochs.append(dict(total=now - self.start, steps=self.step_time,
                                            between_epochs=max(now - ckpt_end, 0.0),
                                            epoch_end=self.bench.ckpt[0][-1] - self._batch_end))
        self.bench.run_round(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            if self.start is not None:
                self._close_epoch()
            self.step_time = 0.0
            self.start = time.perf_counter()
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._batch_end = time.perf_counter()
        self.step_time += self._batch_end - self._batch_start

    def on_train_end(self, logs=None):
        self._close_epoch()


@contextlib.contextmanager
def fit_with(alternation, markers):
    """keras.Model.fit with ``alternation`` first and the two checkpoint markers around
    the callbacks from the first ModelCheckpoint to the last (backup included)."""
    original = keras.Model.fit

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        first = next(i for i, c in enumerate(callbacks) if isinstance(c, keras.callbacks.ModelCheckpoint))
        callbacks = ([alternation] + callbacks[:first] + [Marker(markers[0])] + callbacks[first:]
                     + [Marker(markers[1])])
        return original(self, *args, callbacks=callbacks, **kwargs)

    keras.Model.fit = fit
    try:
        yield
    finally:
        keras.Model.fit = original


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _timed_pass(dataset, waits, count=lambda element: 1):
    """``(seconds, elements)`` of one pass over ``dataset``, the iterator's destruction
    left out of the time and appended to ``waits`` (seconds): TensorFlow 2.21 can block
    there until the iterator's autotuning thread ends its sleep (docs/design/performance.md,
    "End to end")."""
    start = time.perf_counter()
    iterator = iter(dataset)
    n = sum(count(element) for element in iterator)
    seconds = time.perf_counter() - start
    tick = time.perf_counter()
    del iterator  # the only reference: the iterator is destroyed here
    waits.append(time.perf_counter() - tick)
    return seconds, n


def _median(values):
    return statistics.median(values) if values else float("nan")


class KeptIterator:
    """A dataset whose iterator outlives the loop that exhausts it (``run_localization``
    takes any iterable of batches), so the pass can be timed without the iterator's
    destruction, which ``destroy()`` then times apart."""

    def __init__(self, dataset):
        self.dataset, self.iterator = dataset, None

    def cardinality(self):
        return self.dataset.cardinality()

    def __iter__(self):
        self.iterator = iter(self.dataset)
        return self.iterator

    def destroy(self):
        start = time.perf_counter()
        self.iterator = None
        return time.perf_counter() - start


class Bench:
    """One model: the rounds of the training phase, then the evaluation phase."""

    def __init__(self, model_name, root, work_dir, rounds):
        from keras_has import methods
        from keras_has.data.pipeline import resize_size_for
        from keras_has.train.trainer import run_preprocessing, source_from_config

        self.name, self.root, self.rounds = model_name, root, rounds
        self.run_dir = os.path.join(work_dir, f"keras_run_{model_name}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        steps = None
        if FLAGS.fixed_steps:
            from keras_has import data  # noqa: PLC0415

            steps = data.get_source(root).num_examples(FLAGS.train_split) // FLAGS.batch
        # Epoch 0 is the warm-up; epochs 1..rounds are timed; one more epoch follows so that
        # every timed epoch ends, as in a real run, with the change to the next epoch.
        self.config, self.pretrained = train_config(model_name, root, self.run_dir, epochs=rounds + 2,
                                                    steps_per_epoch=steps)
        self.source = source_from_config(self.config)
        self.prep, self.mean, _ = run_preprocessing(self.config, self.source)
        self.method = methods.from_config(self.config.method_config)
        self.hiding = self.method.pipeline_hiding(self.config.hiding, self.config.data.image_size)
        if self.hiding is not None:
            self.hiding["fill_value"] = self.prep.value_of(self.mean)
        self.resize_size = self.config.data.resize_size or resize_size_for(FLAGS.image_size)
        self.keras_epochs, self.torch_epochs, self.ckpt = [], [], ([], [])
        self.parts = {k: [] for k in ("pipeline", "decode", "decode_resize", "cached_steps", "torch_loader")}
        self.loads = [os.getloadavg()]
        self.destroy_waits = []
        self.torch = None
        self.cached = None

    # ----------------------------------------------------------------- training phase
    def train_dataset(self):
        """The training dataset exactly as ``keras_has.train.train`` builds it."""
        from keras_has import data

        c = self.config
        return data.make_train_dataset(
            self.source, c.data.image_size, FLAGS.batch, hiding=None if self.hiding is None else dict(self.hiding),
            seed=c.seed, split=c.data.train_split, preprocessing=self.prep, resize_size=c.data.resize_size,
            drop_remainder=True)

    def torch_config(self):
        c = self.config
        return dict(
            model=self.name, num_classes=self.source.num_classes, root=os.path.abspath(self.root),
            train_split=c.data.train_split, test_split=FLAGS.test_split, image_size=c.data.image_size,
            resize_size=self.resize_size, batch_size=FLAGS.batch, workers=FLAGS.workers, seed=c.seed,
            precision=FLAGS.precision, mean=list(self.prep.mean), std=list(self.prep.std),
            channel_order=self.prep.channel_order, hide=self.hiding is not None,
            grid_sizes=list(c.hiding.scaled_grid_sizes(c.data.image_size)), hide_prob=c.hiding.hide_prob,
            fill=list(self.hiding["fill_value"]) if self.hiding else [0.0, 0.0, 0.0],
            lr=c.optim.lr_values[0], lr_classifier_ratio=c.optim.lr_classifier_ratio, momentum=c.optim.momentum,
            weight_decay=c.optim.weight_decay, nesterov=c.optim.nesterov, freeze_batchnorm=c.freeze_batchnorm,
            cam_curve_interval=FLAGS.cam_curve_interval)

    def on_train_begin(self, model):
        """Untimed: the PyTorch twin gets the Keras model's initial weights; the
        batches of one epoch are cached for the train-step-alone setting."""
        self.torch = torch_worker(self.torch_config())
        print(f"{self.name}: {self.torch.info}", flush=True)
        count = self.torch("set_weights", layers=keras_layers_for_torch(model))
        keras_count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(f"{self.name}: Keras weights copied into PyTorch; trainable parameters Keras {keras_count:,}, "
              f"PyTorch {count:,}", flush=True)
        if count != keras_count:
            raise AssertionError(f"{self.name}: trainable parameters differ (Keras {keras_count}, PyTorch {count})")
        # One epoch of batches, cached in memory (masks included), for the train step alone.
        self.cached = self.train_dataset().cache()
        self.cached_batches = sum(1 for _ in self.cached)

    def run_round(self, model):
        """After a Keras epoch: the PyTorch epoch, then keras-has's parts alone."""
        from keras_has.data.pipeline import resize_image

        r = len(self.keras_epochs) - 1
        if r > self.rounds:  # the epoch after the last timed one: nothing to time
            return
        self.loads.append(os.getloadavg())
        t = self.torch("train_epoch")
        self.torch_epochs.append(t)
        self.parts["torch_loader"].append(self.torch("loader_alone")["seconds"])
        pipeline_s, n = _timed_pass(self.train_dataset(), self.destroy_waits, lambda e: int(e[0].shape[0]))
        self.parts["pipeline"].append(pipeline_s)
        decode = self.source.load(self.config.data.train_split, shuffle=True, seed=0,
                                  decode_min_side=2 * self.resize_size)
        self.parts["decode"].append(_timed_pass(decode, self.destroy_waits)[0])
        resized = decode.map(lambda ex: resize_image(ex["image"], self.resize_size),
                             num_parallel_calls=tf.data.AUTOTUNE)
        self.parts["decode_resize"].append(_timed_pass(resized, self.destroy_waits)[0])

        def steps():  # fit's own compiled step (model.train_function) fed from memory
            kept = KeptIterator(model.distribute_strategy.experimental_distribute_dataset(self.cached))
            iter(kept)
            start = time.perf_counter()
            for _ in range(self.cached_batches):
                logs = model.train_function(kept.iterator)
            float(logs["loss"])
            seconds = time.perf_counter() - start
            # Destroying this iterator (unexhausted, used by the compiled step) can wait
            # for its autotuning thread's sleep: 9.8-9.9 s for ResNet50 --quick. Timed
            # apart, with the other iterator teardowns.
            self.destroy_waits.append(kept.destroy())
            return seconds

        self.parts["cached_steps"].append(steps())
        k = self.keras_epochs[-1]
        ck = self.ckpt[1][-1] - self.ckpt[0][-1]
        print(f"{self.name} round {r}{' (warm-up)' if r == 0 else ''}: keras-has epoch {k['total']:.1f} s "
              f"(steps {k['steps']:.1f}, checkpoints+logs {ck:.2f}, from them to the next epoch's first batch "
              f"{k['between_epochs']:.2f}); PyTorch epoch {t['seconds']['total']:.1f} s "
              f"({t['images']} images, loss {t['loss']:.3f}); keras-has pipeline alone {pipeline_s:.1f} s "
              f"({n} images), cached steps {self.parts['cached_steps'][-1]:.1f} s; load {self.loads[-1][0]:.2f}",
              flush=True)

    # ----------------------------------------------------------------- evaluation phase
    def evaluate(self, result):
        from keras_has.serve.evaluate import evaluate_model_file

        # The evaluate command's settings (EvaluateConfig defaults) but the sweep step.
        settings = dict(cam_threshold=0.2, cam_curve_interval=FLAGS.cam_curve_interval, box_rule="tight",
                        num_examples=16)
        split = FLAGS.test_split
        self.torch("set_weights", layers=keras_layers_for_torch(result.model))
        cold_s, (cold, _, _) = _timed(lambda: evaluate_model_file(
            result.model_path, self.source, split=split, batch_size=FLAGS.batch, verbose=0, **settings))
        cold_torch = self.torch("evaluate")
        print(f"{self.name} evaluation round 0 (warm-up, cold): keras-has evaluate_model_file {cold_s:.1f} s "
              f"(load, trace, pass), PyTorch {cold_torch['seconds']['total']:.1f} s", flush=True)
        # The evaluate command's process (set up as `keras-has evaluate` sets it up) and a
        # PyTorch evaluation process of its own, both started after training.
        command = WorkerProcess(_KERAS_EVAL_SCRIPT, dict(
            model_path=result.model_path, source=self.root, split=split, image_size=FLAGS.image_size,
            batch_size=FLAGS.batch, settings=settings))
        torch_fresh = None
        try:
            torch_fresh = torch_worker(self.torch_config())
            torch_fresh("set_weights", layers=keras_layers_for_torch(result.model))
            command_cold = command("evaluate")["seconds"]
            torch_fresh_cold = torch_fresh("evaluate")["seconds"]["total"]
            print(f"{self.name} evaluation round 0 (warm-up) in processes of their own: keras-has "
                  f"{command_cold:.1f} s (environment {command.info['environment']}), PyTorch "
                  f"{torch_fresh_cold:.1f} s", flush=True)
            return self._evaluate_rounds(result, settings, command, torch_fresh, cold_s, cold, cold_torch)
        finally:
            command.close()
            if torch_fresh is not None:
                torch_fresh.close()

    def _evaluate_rounds(self, result, settings, command, torch_fresh, cold_s, cold, cold_torch):
        from keras_has import data
        from keras_has.localize import boxes as loc
        from keras_has.localize.cams import compute_cams_and_logits
        from keras_has.localize.evaluation import run_localization
        from keras_has.localize.metrics import LocalizationEvaluator
        from keras_has.serve.evaluate import load_for_evaluation

        split = FLAGS.test_split
        model, loaded = load_for_evaluation(result.model_path)
        prep = loaded["preprocessing"]

        def eval_ds():
            return data.make_eval_dataset(self.source, FLAGS.image_size, FLAGS.batch, split=split, preprocessing=prep)

        cached = [dict(image=b["image"], label=b["label"], boxes=b["boxes"].numpy(), num_boxes=b["num_boxes"].numpy())
                  for b in eval_ds()]
        run_localization(model, eval_ds(), verbose=0, **settings)  # traced once for this model
        cams_cached = []
        for b in cached:
            cams, logits = compute_cams_and_logits(model, b["image"], b["label"])
            cams_cached.append((cams.numpy(), logits.numpy()))

        def host_side(box_rule="tight"):
            evaluator = LocalizationEvaluator(cam_threshold=0.2, cam_curve_interval=FLAGS.cam_curve_interval,
                                              box_rule=box_rule)
            for b, (cams, logits) in zip(cached, cams_cached):
                maps = loc.normalize_cams(loc.resize_cams(cams, (FLAGS.image_size, FLAGS.image_size)))
                evaluator.accumulate(maps, b["boxes"], b["num_boxes"], b["label"].numpy(), logits=logits,
                                    normalized=True)
            return evaluator.compute()

        ev = {k: [] for k in ("keras", "torch", "command", "torch_fresh", "pipeline", "forward", "host", "kept",
                              "teardown")}
        for r in range(1, self.rounds + 1):
            self.loads.append(os.getloadavg())
            s, res = _timed(lambda: run_localization(model, eval_ds(), verbose=0, **settings))
            ev["keras"].append(s)
            keras_metrics = res.metrics
            t = self.torch("evaluate")
            ev["torch"].append(t)
            own = command("evaluate")
            ev["command"].append(own["seconds"])
            command_metrics = own["metrics"]
            ev["torch_fresh"].append(torch_fresh("evaluate"))
            ev["pipeline"].append(_timed_pass(eval_ds(), self.destroy_waits)[0])
            ev["forward"].append(_timed(lambda: [compute_cams_and_logits(model, b["image"], b["label"])[0].numpy()
                                                 for b in cached])[0])
            ev["host"].append(_timed(host_side)[0])
            kept = KeptIterator(eval_ds())
            ev["kept"].append(_timed(lambda: run_localization(model, kept, verbose=0, **settings))[0])
            ev["teardown"].append(kept.destroy())
            print(f"{self.name} evaluation round {r}: in processes of their own keras-has {ev['command'][-1]:.2f} s, "
                  f"PyTorch {ev['torch_fresh'][-1]['seconds']['total']:.2f} s; in the training processes keras-has "
                  f"{s:.2f} s, PyTorch {t['seconds']['total']:.2f} s "
                  f"({t['images']} images); keras-has pipeline alone {ev['pipeline'][-1]:.1f} s, forward alone "
                  f"{ev['forward'][-1]:.1f} s, host side alone {ev['host'][-1]:.1f} s; pass with its iterator kept "
                  f"{ev['kept'][-1]:.1f} s, then that iterator's destruction {ev['teardown'][-1]:.2f} s; "
                  f"load {self.loads[-1][0]:.2f}",
                  flush=True)
        wsol_rule_s, wsol_rule = _timed(lambda: host_side("wsolevaluation"))
        # wsolevaluation's evaluator (bicubic CAM resize, per-threshold contours) on
        # keras-has's own CAMs: what is left of the difference then comes from the CAMs
        # (input resize, bfloat16), not from the box rule.
        import cv2  # noqa: PLC0415

        import torch_end_to_end  # noqa: PLC0415

        theirs = torch_end_to_end.BoxEvaluator(list(np.arange(0, 1, FLAGS.cam_curve_interval)))
        size = (FLAGS.image_size, FLAGS.image_size)
        for b, (cams, _) in zip(cached, cams_cached):
            for cam, gt, count in zip(cams, b["boxes"], b["num_boxes"]):
                theirs.accumulate(torch_end_to_end.normalize_scoremap(
                    cv2.resize(cam, size, interpolation=cv2.INTER_CUBIC)), gt[:count].astype(np.int64))
        theirs_on_keras = theirs.compute()[0]
        # Weights check: the same float32 weights give the same function.
        from keras_has import models

        twin = models.get_model(self.name, self.source.num_classes,
                                input_shape=(FLAGS.image_size, FLAGS.image_size, 3), weights=None, seed=0)
        # The model as saved (the evaluated one has its batch norms folded).
        saved, _ = load_for_evaluation(result.model_path, fold_batch_norm=False)
        by_name = {layer.name: layer for layer in _weighted_layers(saved)}
        for layer in _weighted_layers(twin):
            layer.set_weights(by_name[layer.name].get_weights())
        x = cached[0]["image"][:4]
        diff = np.abs(twin.predict_on_batch(x) - self.torch("logits", images=x.numpy())).max()
        torch_logits = t["logits"]
        keras_pred = np.concatenate([c[1].argmax(1) for c in cams_cached])
        agree = float((torch_logits.argmax(1) == keras_pred).mean() * 100)
        return dict(ev=ev, images=int(keras_metrics["num_images"]), keras_metrics=keras_metrics, torch=t,
                    command_env=command.info["environment"],
                    command_same_metrics=all(command_metrics[k] == v for k, v in keras_metrics.items()),
                    wsol_rule=wsol_rule, wsol_rule_s=wsol_rule_s, cold_s=cold_s, cold_torch=cold_torch,
                    cold_metrics=cold.metrics, logit_diff=float(diff), agree=agree,
                    theirs_on_keras=theirs_on_keras)


# --------------------------------------------------------------------------- report


def _rate(images, seconds):
    return images / seconds if seconds else float("nan")


def report(bench, train_images, evaluation):
    """Prints the summary of one model; returns (train ratio, evaluation ratio)."""
    timed = slice(1, bench.rounds + 1)  # round 0 is the warm-up
    k = bench.keras_epochs[timed]
    t = bench.torch_epochs[timed]
    ck = [b - a for a, b in zip(*bench.ckpt)][timed]
    p = {key: v[timed] for key, v in bench.parts.items()}
    k_total, t_total = _median([e["total"] for e in k]), _median([e["seconds"]["total"] for e in t])
    k_rate, t_rate = _rate(train_images, k_total), _rate(train_images, t_total)
    n = train_images
    n_all = bench.source.num_examples(bench.config.data.train_split)
    print(f"\n{bench.name}: fine-tuning epoch, {n} images, batch {FLAGS.batch}, {FLAGS.image_size} px, "
          f"{FLAGS.precision}, median of {len(k)} round(s)")
    print(f"  keras-has  {k_rate:7.1f} img/s  epoch {k_total:6.1f} s = steps incl. input wait "
          f"{_median([e['steps'] for e in k]):.1f} s + checkpoints/backup/logs {_median(ck):.2f} s + "
          f"from the last step to the checkpoints {_median([e['epoch_end'] for e in k]):.2f} s + "
          f"on_epoch_begin callbacks and the iterator change {_median([e['between_epochs'] for e in k]):.2f} s + rest "
          f"(other callbacks' batch hooks)")
    print(f"    alone: tf.data pipeline {_rate(n, _median(p['pipeline'])):.1f} img/s "
          f"({1e3 * _median(p['pipeline']) / n:.1f} ms/img); read+decode alone "
          f"{1e3 * _median(p['decode']) / n_all:.1f} "
          f"ms/img, read+decode+antialiased resize to {bench.resize_size} alone "
          f"{1e3 * _median(p['decode_resize']) / n_all:.1f} ms/img; "
          f"train step on cached batches {_rate(n, _median(p['cached_steps'])):.1f} img/s "
          f"({1e3 * _median(p['cached_steps']) / n:.1f} ms/img)")
    ts = {key: _median([e["seconds"][key] for e in t]) for key in ("data", "hide", "step", "checkpoint")}
    print(f"  PyTorch    {t_rate:7.1f} img/s  epoch {t_total:6.1f} s = waiting for the DataLoader {ts['data']:.1f} s "
          f"+ Hide-and-Seek loop {ts['hide']:.2f} s + steps {ts['step']:.1f} s + torch.save {ts['checkpoint']:.2f} s")
    print(f"    alone: DataLoader ({FLAGS.workers} workers) {_rate(n, _median(p['torch_loader'])):.1f} img/s")
    train_ratio = k_rate / t_rate
    print(f"  ratio keras-has / PyTorch {train_ratio:.2f}")
    between = [e["between_epochs"] for e in bench.keras_epochs[:bench.rounds + 1]]
    waits = bench.destroy_waits
    print(f"  stalls: keras-has from the epoch-end callbacks to the next first batch, every epoch: "
          f"{', '.join(f'{v:.1f}' for v in between)} s; tf.data iterator teardown after each 'alone' pass: "
          f"{sum(w > 1.0 for w in waits)} of {len(waits)} over 1 s (max {max(waits, default=0):.1f} s)")

    ev = evaluation["ev"]
    m = evaluation["images"]
    ke, te = _median(ev["keras"]), _median([e["seconds"]["total"] for e in ev["torch"]])
    kc, tf_ = _median(ev["command"]), _median([e["seconds"]["total"] for e in ev["torch_fresh"]])
    tp = {key: _median([e["seconds"][key] for e in ev["torch_fresh"]]) for key in ("data", "forward", "cam", "boxes")}
    print(f"\n{bench.name}: localization evaluation, {m} test images, thresholds "
          f"np.arange(0, 1, {FLAGS.cam_curve_interval}), median of {len(ev['keras'])} round(s)")
    print(f"  keras-has  {_rate(m, kc):7.1f} img/s  pass {kc:.2f} s in the evaluate command's process "
          f"(environment {evaluation['command_env']}; metrics equal to the in-process pass's: "
          f"{evaluation['command_same_metrics']}); evaluate_model_file cold: {evaluation['cold_s']:.1f} s")
    print(f"    in the training process (the per-epoch localization pass): {_rate(m, ke):.1f} img/s, pass {ke:.2f} s")
    print(f"    alone: eval pipeline {1e3 * _median(ev['pipeline']) / m:.1f} ms/img, forward (CAMs+logits) "
          f"{1e3 * _median(ev['forward']) / m:.1f} ms/img, host side (resize, normalise, sweep) "
          f"{1e3 * _median(ev['host']) / m:.1f} ms/img")
    print(f"  PyTorch    {_rate(m, tf_):7.1f} img/s  pass {tf_:.2f} s in an evaluation process of its own = DataLoader "
          f"wait {tp['data']:.1f} s + forward {tp['forward']:.1f} s + CAM resize/normalise {tp['cam']:.2f} s + "
          f"per-threshold contours {tp['boxes']:.1f} s ({1e3 * tp['boxes'] / m:.1f} ms/img)")
    print(f"    in the training process: {_rate(m, te):.1f} img/s, pass {te:.2f} s")
    parts = _median(ev["pipeline"]) + _median(ev["forward"]) + _median(ev["host"])
    print(f"    sum of the parts alone {parts:.1f} s ({_rate(m, parts):.1f} img/s); the same pass with its tf.data "
          f"iterator kept alive {_median(ev['kept']):.1f} s, the iterator's destruction afterwards "
          f"{', '.join(f'{v:.2f}' for v in ev['teardown'])} s")
    eval_ratio = tf_ / kc
    fresh_totals = [e["seconds"]["total"] for e in ev["torch_fresh"]]
    print(f"  ratio keras-has / PyTorch {eval_ratio:.2f} (processes of their own: the evaluate command and a "
          f"PyTorch evaluation script); in the training processes {te / ke:.2f}; per round "
          f"{', '.join(f'{t_ / k:.2f}' for k, t_ in zip(ev['command'], fresh_totals))}")
    print(f"    ceiling: PyTorch's pass / keras-has's forward alone {tf_ / _median(ev['forward']):.2f} (the ratio "
          f"if everything but the forward pass were free; scripts/benchmark_forward_rate.py says how near that "
          f"forward pass is to the cores' bfloat16 GEMM rate)")
    km, tt = evaluation["keras_metrics"], evaluation["torch"]
    print(f"  MaxBoxAccV2 (IoU 30/50/70), same weights: keras-has {km['max_box_acc_v2']:.2f} "
          f"({km['max_box_acc_v2_iou30']:.1f}/{km['max_box_acc_v2_iou50']:.1f}/{km['max_box_acc_v2_iou70']:.1f}; "
          f"with box_rule=wsolevaluation {evaluation['wsol_rule']['max_box_acc_v2']:.2f}), PyTorch "
          f"{tt['max_box_acc_v2']:.2f} ({'/'.join(f'{v:.1f}' for v in tt['per_iou'].values())}); "
          f"difference {km['max_box_acc_v2'] - tt['max_box_acc_v2']:+.2f} points")
    print(f"    wsolevaluation's evaluator (bicubic CAM resize, contours) on keras-has's CAMs: "
          f"{evaluation['theirs_on_keras']:.2f} (vs PyTorch's CAMs {tt['max_box_acc_v2']:.2f}: the rest of the "
          f"difference comes from the CAMs, i.e. input resize and bfloat16)")
    print(f"  Top-1: keras-has {km['top1_cls']:.2f}, PyTorch {tt['top1']:.2f}; predictions agree on "
          f"{evaluation['agree']:.1f}% of images; float32 logits, Keras vs PyTorch on the same 4 inputs: "
          f"max |diff| {evaluation['logit_diff']:.2e}"
          f"{'' if evaluation['logit_diff'] < 1e-3 else ' -- MISMATCH: the PyTorch twin is not the Keras model'}")
    return train_ratio, eval_ratio


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = [m for m in FLAGS.models if m not in ("mobilenetv2_gap", "resnet50_gap")]
    if unknown:
        raise app.UsageError(f"--models: expected mobilenetv2_gap and/or resnet50_gap, received {unknown}")
    if FLAGS.quick:
        FLAGS.rounds = 1
        FLAGS.train_images = FLAGS.train_images or 96
        FLAGS.test_images = FLAGS.test_images or 64
    import torch  # noqa: F401, PLC0415  (fail early without PyTorch)

    own_work_dir = FLAGS.work_dir is None
    work_dir = tempfile.mkdtemp(prefix="e2e_") if own_work_dir else FLAGS.work_dir
    os.makedirs(work_dir, exist_ok=True)
    root = FLAGS.source
    if FLAGS.write_synthetic:
        root = write_synthetic_folder(FLAGS.write_synthetic, FLAGS.synthetic_image_size, FLAGS.synthetic_train,
                                      FLAGS.synthetic_test)
        print(f"wrote the built-in synthetic dataset ({FLAGS.synthetic_train} train, {FLAGS.synthetic_test} test, "
              f"{FLAGS.synthetic_image_size} px JPEGs) to {root}")
    if not os.path.isdir(os.path.join(root, "metadata")):
        raise app.UsageError(f"--source: {root} is not a WSOL metadata folder (no metadata/)")
    if FLAGS.train_images or FLAGS.test_images:
        root = write_subset_folder(root, os.path.join(work_dir, "subset"),
                                   {FLAGS.train_split: FLAGS.train_images, FLAGS.test_split: FLAGS.test_images})
    print(cpu_line())
    import torch as torch_module  # noqa: PLC0415

    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, torch {torch_module.__version__}; "
          f"data {os.path.abspath(root)}; load average at start {os.getloadavg()}", flush=True)
    ratios = []
    try:
        for name in FLAGS.models:
            from keras_has.train.trainer import train  # noqa: PLC0415

            bench = Bench(name, root, work_dir, FLAGS.rounds)
            print(f"{name}: keras-has train config from --flagfile={FLAGS.flagfile_train}: "
                  f"{'ImageNet weights' if bench.pretrained else 'NO cached ImageNet weights: random init'}, "
                  f"preprocessing {bench.prep.mode}, hiding {bench.hiding}, freeze_batchnorm "
                  f"{bench.config.freeze_batchnorm}, mixed_precision {bench.config.mixed_precision}", flush=True)
            alternation = Alternation(bench)
            try:
                with fit_with(alternation, bench.ckpt):
                    result = train(bench.config, overwrite=True)
                train_images = bench.cached_batches * FLAGS.batch
                evaluation = bench.evaluate(result)
            finally:
                if bench.torch is not None:
                    bench.torch.close()
            ratios.append(report(bench, train_images, evaluation))
            print(f"  {name}: train epoch ratio {ratios[-1][0]:.2f}, evaluation ratio {ratios[-1][1]:.2f}")
            loads = [entry[0] for entry in bench.loads]
            print(f"  load average (1 min) during the rounds: min {min(loads):.2f}, median {_median(loads):.2f}, "
                  f"max {max(loads):.2f} on {os.cpu_count()} cores")
            keras.backend.clear_session()
    finally:
        if own_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    train_ratio, eval_ratio = ratios[0]  # the first of --models
    print(f"train epoch ratio {train_ratio:.2f}, evaluation ratio {eval_ratio:.2f} (keras-has / PyTorch)")


if __name__ == "__main__":
    app.run(main)
