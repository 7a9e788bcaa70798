"""Training a method's model: the labels enter the training graph as an input.

ACoL's erasing and SPG's guidance need the ground-truth class in training, and
CutMix's loss needs the pasted labels. The inference model (what `Method.build`
returns, what is saved, evaluated and exported) takes images only; its label-using
layers fall back to the top-1 class. `labelled_graph` replays that graph on two
inputs, images and int labels, with the SAME layer objects (no weight is copied), and
passes the labels to every layer whose `call` has a `labels` argument
(`keras_has.methods.layers.takes_labels`). `TrainingModel` fits that graph: its
`train_step` applies `method.augment_batch` and its `compute_loss` the method's loss on
the targets that it returned. Nothing is traced under a hidden context: tracing the
inference model anywhere gives the inference behaviour, tracing the labelled graph the
training one.

    >>> model = method.build(models.get_model("tiny_gap", 2, input_shape=(32, 32, 3)))
    >>> training = TrainingModel(model, method, seed=0)
    >>> training.compile(optimizer="sgd", metrics=["accuracy"])
    >>> training.fit(dataset_of_images_and_labels)
    >>> training.save("model.keras")        # writes `model`, the inference model
"""
from __future__ import annotations

import keras
import tensorflow as tf

from keras_has.methods.base import Method, step_seed, target_labels
from keras_has.methods.layers import takes_labels
from keras_has.models.standard import standard_layers_model

__all__ = ["TrainingModel", "labelled_graph", "per_replica", "inference_model_of"]


def _single_input_output(model) -> None:
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") \
            or model.inputs is None:
        raise ValueError(f"model: expected a functional keras.Model (a keras_has model), "
                         f"received {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r}: expected one image input and one logits "
                         f"output, received {len(model.inputs)} input(s) and "
                         f"{len(model.outputs)} output(s)")


def labelled_graph(model: keras.Model) -> keras.Model:
    """`model`'s graph on two inputs, `[images, labels] -> logits`, sharing its layers.

    Every layer of `model`'s top-level graph is called again, in the same order, on the
    new inputs (`keras.models.clone_model` with the layers themselves as clones), and a
    layer whose `call` takes `labels` gets the labels input; layers inside nested
    sub-models (a `keras.applications` backbone) are reused as they are. The result
    computes exactly `model`'s operations, plus the labels where layers use them.

    Args:
      model: a functional model with one image input and one output (the logits).

    Returns:
      A functional `keras.Model` named like `model`; inputs images (the shape and dtype
      of `model`'s input) and `labels` int32 `[B]`; output the logits.

    Raises:
      ValueError: `model` is not a functional model with one input and one output.
    """
    _single_input_output(model)
    labels = keras.Input(shape=(), dtype="int32", name="labels")
    # clone_model replays a graph on new inputs of its inputs' structure: give the
    # graph an (unused) labels input, then replay it with the labels wired in.
    with_labels_input = keras.Model([model.inputs[0], labels], model.outputs[0],
                                    name=model.name)
    source = model.inputs[0]
    images = keras.Input(batch_shape=source.shape, dtype=source.dtype, name=source.name)

    def call(layer, *args, **kwargs):
        if takes_labels(layer):
            kwargs["labels"] = labels
        return layer(*args, **kwargs)

    return keras.models.clone_model(with_labels_input, input_tensors=[images, labels],
                                    clone_function=lambda layer: layer, call_function=call)


def per_replica(loss):
    """`loss` divided by the number of replicas in sync (unchanged with one), so that
    the replicas' summed gradients are those of the mean loss over the global batch.
    Under `tf.distribute`, Keras' TensorFlow trainer scales a compiled loss (in the
    `Loss` reduction) and the `add_loss` terms so; `TrainingModel.compute_loss` replaces
    the latter path and scales them here, exactly alike."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
        loss = keras.ops.multiply(loss, keras.ops.cast(1.0 / replicas, loss.dtype))
    return loss


class TrainingModel(keras.Model):
    """Fits an inference model with its WSOL method, the labels as a graph input.

    `model((images, labels), training=True)` runs `labelled_graph(inference_model)`;
    `model(images)` runs the inference model (its label-using layers take the top-1
    class). A training step (`train_step`) unpacks `(images, labels)`, applies
    `method.augment_batch` with a stateless seed from `(seed, replica, optimizer step)`
    (`keras_has.methods.base.step_seed`), runs the labelled graph and minimises
    `method.loss()` of the returned targets plus the `add_loss` terms of the method's
    layers (`compute_loss`); accuracy metrics compare the logits with the labels
    (CutMix: the unpasted ones). Validation (`test_step`) is Keras' own, on the
    inference model.

    The weights are the inference model's (the same variables; this model has none of
    its own), and every file goes through the inference model: `save`, `save_weights`
    and `load_weights` write and read its `.keras` / `.weights.h5` files, so checkpoints,
    `BackupAndRestore` and the final model have its layer names. `compile` compiles
    the inference model too, with the same optimizer object, so its files carry the
    optimizer state (a backup resumes momentum and the step count).

    Args:
      inference_model: a functional keras_has model (one image input `[B, H, W, 3]`,
        one logits output `[B, K]`), usually `method.build(...)`'s result.
      method: the `keras_has.methods.base.Method` the model was built with.
      seed: int, the run's seed (CutMix's boxes and pastes per step).

    Raises:
      ValueError: `inference_model` has not one input and one output.
      TypeError: `method` is not a `Method`.
    """

    def __init__(self, inference_model, method, seed: int = 0, **kwargs):
        if not isinstance(method, Method):
            raise TypeError(f"method: expected a keras_has.methods.Method, received "
                            f"{type(method).__name__}")
        _single_input_output(inference_model)
        kwargs.setdefault("name", f"{inference_model.name}_training")
        kwargs.setdefault("dtype", inference_model.dtype_policy)
        super().__init__(**kwargs)
        self.inference_model = inference_model
        self.labelled_model = labelled_graph(inference_model)
        self.method = method
        self.seed = int(seed)
        self.built = True  # every variable is the inference model's

    def call(self, inputs, training=None):
        if isinstance(inputs, (tuple, list)):
            if len(inputs) != 2:
                raise ValueError(f"TrainingModel: expected images or (images, labels), "
                                 f"received {len(inputs)} inputs")
            return self.labelled_model(list(inputs), training=training)
        return self.inference_model(inputs, training=training)

    # ------------------------------------------------------------------- training
    def compile(self, optimizer="rmsprop", metrics=None, **kwargs):
        """Keras' `compile` with the method's loss (`method.loss()`; no `loss`
        argument); the inference model is compiled alike, with this model's optimizer."""
        if "loss" in kwargs:
            raise ValueError(f"TrainingModel.compile: the loss is the method's "
                             f"({type(self.method).__name__}.loss()); expected no `loss`, "
                             f"received loss={kwargs['loss']!r}")
        loss = self.method.loss()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        kwargs["auto_scale_loss"] = False  # the optimizer is already this model's
        self.inference_model.compile(optimizer=self.optimizer, loss=loss, metrics=metrics,
                                     **kwargs)

    def train_step(self, data):
        images, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if labels is None:
            raise ValueError("TrainingModel: expected (images, labels) training batches, "
                             "received images only")
        step = self.optimizer.iterations if self.optimizer is not None else 0
        images, targets = self.method.augment_batch(images, labels, step_seed(self.seed, step))
        return super().train_step(
            keras.utils.pack_x_y_sample_weight((images, labels), targets, sample_weight))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """`method.loss()` of the targets `y` and the logits, plus every `add_loss`
        term of this call, each divided by the replicas in sync; summed as Keras'
        TensorFlow trainer sums a compiled loss and added losses."""
        losses = [keras.ops.cast(self.loss(y, y_pred, sample_weight), "float32")]
        for extra in self.losses:
            if not keras.backend.is_float_dtype(extra.dtype):
                extra = keras.ops.cast(extra, keras.backend.floatx())
            losses.append(per_replica(keras.ops.sum(extra)))
        return losses[0] if len(losses) == 1 else keras.ops.sum(losses)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, target_labels(y), y_pred, sample_weight)

    # --------------------------------------------------------------------- files
    def save(self, filepath, *args, **kwargs):
        """Saves the inference model for inference (`keras.Model.save`): its speed
        layers as the standard Keras layers they stand for and no optimizer
        (`keras_has.models.standard.standard_layers_model`), so a GAP or Hide-and-Seek
        model on a `keras.applications` backbone loads with plain Keras. The training
        state (optimizer included) is in the weights files of `save_weights`."""
        return standard_layers_model(self.inference_model).save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        """Saves the inference model's weights and the optimizer state."""
        return self.inference_model.save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """Loads weights (and optimizer state) saved by `save_weights`."""
        return self.inference_model.load_weights(filepath, *args, **kwargs)


def inference_model_of(model):
    """The model that is saved for `model`: a `TrainingModel`'s inference model, else
    `model` itself (for callbacks that look at the fitted model's layers)."""
    return model.inference_model if isinstance(model, TrainingModel) else model
