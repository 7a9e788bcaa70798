"""Keras callbacks: CAM localization scored during ``fit``, one printed line per epoch,
and TensorBoard on the saved model."""
from __future__ import annotations

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_has.localize import evaluation
from keras_has.localize import visualize
from keras_has.methods.training import inference_model_of
from keras_has.util.files import atomic_write_json


LOG_KEYS = ("top1_cls", "top5_cls", "gt_known_loc", "top1_loc", "max_box_acc",
            "max_box_acc_v2", "top1_loc_max")


__all__ = ["LOG_KEYS", "write_scalar", "write_image", "LocalizationCallback", "TensorBoard",
           "EpochLine", "HidingSchedule", "EpochCSVLogger"]


def _metadata(plugin):
    from tensorflow.core.framework import summary_pb2
    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    return meta.SerializeToString()


def write_scalar(tag, value, step):
    """A TensorBoard scalar via ``tf.summary.write`` (works without the tensorboard
    package, which ``tf.summary.scalar`` needs); read back as a ``scalars`` plugin event."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=_metadata("scalars"))


def write_image(tag, image, step):
    """One RGB uint8 ``[H, W, 3]`` image as a TensorBoard ``images`` plugin event."""
    h, w = image.shape[:2]
    png = tf.io.encode_png(tf.constant(image, tf.uint8))
    tf.summary.write(tag, tf.stack([tf.constant(str(w)), tf.constant(str(h)), png]),
                     step=step, metadata=_metadata("images"))



class LocalizationCallback(keras.callbacks.Callback):
    """Runs :func:`keras_has.localize.evaluation.run_localization` every ``every_n_epochs``
    on the fitted model (a ``TrainingModel``'s inference model).

    Adds ``{prefix}{name}`` for ``name`` in ``LOG_KEYS`` (and ``pxap`` when the dataset
    has masks) to the epoch logs, so ``ModelCheckpoint(monitor="val_loc_top1_loc")``,
    ``EarlyStopping`` and ``CSVLogger`` can use them. On epochs that are skipped the
    keys carry the last computed values (NaN before the first evaluation) so that
    ``CSVLogger`` always sees the same columns.

    With ``log_dir``: TensorBoard scalars ``localization/<name>`` and an image grid
    ``localization/cam_overlays`` (GT boxes green, predicted boxes red) in
    ``log_dir/localization``, and ``log_dir/localization/metrics_epoch{N:04d}.json``
    (atomic write) per evaluation.

    Args:
        eval_dataset: iterable of eval dict batches (``keras_has.data.make_eval_dataset``).
        every_n_epochs: evaluate after epochs ``N, 2N, ...`` and after the last epoch
            of ``fit``.
        log_dir: directory for TensorBoard events and JSON files, or None.
        prefix: key prefix in the logs.
        num_images: how many overlays in the TensorBoard grid.
        mean / std: per-channel normalisation (pixel scale) to show the images; None
            shows a per-image min-max stretch.
        preprocessing: the ``keras_has.data.preprocessing.Preprocessing`` of the dataset's
            images (used to show them; replaces ``mean`` / ``std``).
        max_batches: evaluate on at most this many batches.
        verbose: progress bar while evaluating.
        evaluator_kwargs: ``cam_threshold``, ``cam_curve_interval``,
            ``iou_thresholds``, ``box_rule`` for the evaluator, and ``cam_method``,
            ``cam_layer``, ``cam_normalization`` for the maps (so any Keras classifier
            being fitted gets its metrics and TensorBoard CAM images, e.g. with
            ``cam_method="gradcam"``; `keras_has.localize.cams.compute_cams`).
    """

    def __init__(self, eval_dataset, every_n_epochs=1, log_dir=None, prefix="val_loc_",
                 num_images=8, mean=None, std=None, max_batches=None, verbose=1,
                 preprocessing=None, **evaluator_kwargs):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(f"every_n_epochs: expected >= 1, received {every_n_epochs!r}")
        self.eval_dataset = eval_dataset
        self.every_n_epochs = int(every_n_epochs)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.prefix = prefix
        self.num_images = int(num_images)
        self.mean, self.std = mean, std
        self.preprocessing = preprocessing
        self.max_batches = max_batches
        self.verbose = verbose
        self.evaluator_kwargs = evaluator_kwargs
        self.last_metrics = None
        self.history = []
        self._writer = None

    def _writer_for(self):
        if self._writer is None and self.log_dir is not None:
            os.makedirs(os.path.join(self.log_dir, "localization"), exist_ok=True)
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "localization"))
        return self._writer

    def evaluate(self, epoch):
        """Evaluates now; returns the metrics dict and writes the logs."""
        result = evaluation.run_localization(
            inference_model_of(self.model), self.eval_dataset, num_examples=self.num_images,
            verbose=self.verbose, max_batches=self.max_batches, **self.evaluator_kwargs)
        metrics = dict(result.metrics)
        metrics["epoch"] = int(epoch) + 1
        self.last_metrics = metrics
        self.history.append(metrics)
        writer = self._writer_for()
        if writer is not None:
            with writer.as_default():
                for k, v in metrics.items():
                    if k not in ("epoch", "num_images"):
                        write_scalar(f"localization/{k}", v, int(epoch) + 1)
                if result.examples is not None:
                    ex = result.examples
                    if self.preprocessing is not None:
                        images = self.preprocessing.to_pixels(ex["image"])
                    elif self.mean is not None and self.std is not None:
                        images = visualize.denormalize_images(ex["image"], self.mean, self.std)
                    else:
                        images = visualize.to_uint8_images(ex["image"])
                    grid = visualize.gallery(images, ex["cam"], ex["boxes"], ex["num_boxes"],
                                             ex["pred_box"])
                    write_image("localization/cam_overlays", grid, int(epoch) + 1)
            writer.flush()
            atomic_write_json(os.path.join(self.log_dir, "localization",
                                            f"metrics_epoch{int(epoch) + 1:04d}.json"),
                               metrics)
        return metrics

    def _keys(self):
        keys = list(LOG_KEYS)
        # Known before the first evaluation (CSVLogger fixes its columns at epoch 1).
        spec = getattr(self.eval_dataset, "element_spec", None)
        has_masks = isinstance(spec, dict) and "mask" in spec
        if has_masks or (self.last_metrics is not None and "pxap" in self.last_metrics):
            keys.append("pxap")
        return keys

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        last = (self.params or {}).get("epochs")
        measured = (epoch + 1) % self.every_n_epochs == 0 or epoch + 1 == last
        if measured:
            self.evaluate(epoch)
        # Figures only on the epochs that measured them (NaN otherwise: the console and
        # the CSV do not repeat an older epoch's figures as if they were this one's).
        for k in self._keys():
            value = (self.last_metrics.get(k, np.nan)
                     if measured and self.last_metrics is not None else np.nan)
            logs[f"{self.prefix}{k}"] = float(value)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' `TensorBoard` callback; fitting a `keras_has.methods.TrainingModel`, it
    looks at the inference model (the saved one), so the model summary (`train/keras`)
    is that model's config, as when the inference model itself was fitted."""

    def set_model(self, model):
        super().set_model(inference_model_of(model))


def _format_value(key: str, value: float) -> str:
    if "loc" in key or "acc" in key or "pxap" in key or "top" in key:
        return f"{value:.4f}" if value <= 1.0 else f"{value:.2f}"
    return f"{value:.4g}"


class EpochLine(keras.callbacks.Callback):
    """Prints one line per epoch: `epoch 3/10  loss 0.512  accuracy 0.871 ... 21.4 s`.

    Args:
      epochs: total epochs of the run (shown as `k/epochs`).
      keys: log keys to show, in order, when present; None shows `DEFAULT_KEYS`.
      stream: where to write (default: sys.stdout at print time).
      prefix: text before each line (e.g. "  ").
    """

    DEFAULT_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_loc_gt_known_loc",
                    "val_loc_max_box_acc_v2", "learning_rate")

    def __init__(self, epochs: int, keys=None, stream=None, prefix: str = "  "):
        super().__init__()
        self.epochs = int(epochs)
        self.keys = tuple(self.DEFAULT_KEYS if keys is None else keys)
        self.stream = stream
        self.prefix = prefix
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def format_line(self, epoch: int, logs: dict, seconds: float) -> str:
        """The line for 0-based `epoch` with `logs`, which took `seconds`."""
        width = len(str(self.epochs))
        parts = [f"epoch {epoch + 1:>{width}}/{self.epochs}"]
        for key in self.keys:
            try:
                value = float((logs or {})[key])
            except (KeyError, TypeError, ValueError):
                continue
            if not math.isfinite(value):  # e.g. a localization metric not run this epoch
                continue
            parts.append(f"{key.replace('val_loc_', 'val_')} {_format_value(key, value)}")
        parts.append(f"{seconds:.1f} s")
        return self.prefix + "  ".join(parts)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - (self._start or time.perf_counter())
        stream = self.stream if self.stream is not None else sys.stdout
        print(self.format_line(epoch, dict(logs or {}), seconds), file=stream, flush=True)


class HidingSchedule(keras.callbacks.Callback):
    """Sets the share of hidden training images at the start of every epoch.

    Args:
      share: the float32 scalar `tf.Variable` the training pipeline reads
        (`keras_has.data.make_train_dataset(hiding_share=...)`).
      hiding: the run's `keras_has.config.HidingConfig`; `hidden_share(epoch)` (epochs
        counted from 1) is a pure function of the epoch, so a resumed run gets the
        right value. Adds `hidden_share` to the epoch logs (CSV and TensorBoard).
    """

    def __init__(self, share: tf.Variable, hiding):
        super().__init__()
        self.share = share
        self.hiding = hiding

    def on_epoch_begin(self, epoch, logs=None):
        self.share.assign(self.hiding.hidden_share(epoch + 1))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["hidden_share"] = self.hiding.hidden_share(epoch + 1)


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """Keras' `CSVLogger` with epochs counted from 1, as the console counts them
    ("epoch 1/10"), `LocalizationCallback`'s `metrics_epoch0001.json` and the backups'
    "after N finished epochs"."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)
