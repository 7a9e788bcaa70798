"""The layers of any Keras classifier, for CAMs: paths through nested models, the
feature map that feeds the classification head, and a forward pass that returns that
feature map together with the class scores.

* A *path* names a layer from the top model down, models separated by ``/``:
  ``"resnet50/conv5_block3_out"`` is the layer ``conv5_block3_out`` of the nested model
  ``resnet50`` (the usual ``x = base(x)`` with a ``keras.applications`` backbone); a
  nested model's own name (``"resnet50"``) is its output. Functional and Sequential
  models are walked into; any other model or layer is a leaf.
* The *head* is the chain of single-input layers between the model's class-score
  output and the last 4-D tensor ``[B, h, w, C]`` before it (`find_head`): for a GAP
  classifier ``GlobalAveragePooling2D -> Dense``; that tensor is the default CAM layer.
* The *logits* are the class scores before a softmax or sigmoid: a final ``Dense``
  with such an activation counts by its pre-activation (its kernel and bias applied
  to its input), a final ``Activation`` / ``Softmax`` layer by its input.
* `FeatureProbe(model, layer, head)` runs the model's graph layer by layer (into nested
  models) on real tensors and returns ``(features, logits)`` from one forward pass. It
  creates no Keras nodes: the model's layers keep the graph they had (a symbolic
  re-wiring would add inbound nodes to them, which e.g. batch-norm folding reads).

Everything that can be wrong with a model or a layer name is a one-line ValueError
raised here, before any image is processed.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect

import keras
import tensorflow as tf

__all__ = ["SEPARATOR", "LayerRef", "Head", "graph_kind", "walk_layers", "resolve_layer",
           "feature_layers", "output_index", "find_head", "FeatureProbe"]

SEPARATOR = "/"
# Activations whose input, not output, is the class score.
_SQUASHING = ("softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class LayerRef:
    """One layer of a (possibly nested) model.

    Attributes:
      path: names from the top model down, ``"backbone/conv5_block3_out"``.
      layer: the layer (or nested model) object.
      shape: its symbolic output shape (``None`` when unknown or not a single tensor).
    """
    path: str
    layer: object
    shape: tuple | None

    @property
    def names(self) -> tuple:
        return tuple(self.path.split(SEPARATOR))


@dataclasses.dataclass(frozen=True)
class Head:
    """What lies between the feature map and the class scores.

    Attributes:
      features: the layer whose 4-D output feeds the head (None: no 4-D tensor found).
      layers: the head's layers from the features to the output, in forward order.
      logits: how the class scores are read: ``("output", None)``, ``("dense", path)``
        (pre-activation of that Dense) or ``("input_of", path)`` (input of that
        softmax / sigmoid layer).
      num_classes: the width of the class-score output.
      problem: why the walk back from the output stopped before a 4-D tensor (or "").
    """
    features: LayerRef | None
    layers: tuple
    logits: tuple
    num_classes: int | None
    problem: str = ""

    def describe(self) -> str:
        return " -> ".join(f"{ref.path} ({type(ref.layer).__name__})" for ref in self.layers) or "(none)"

    @property
    def output_activation(self) -> str | None:
        """``"softmax"`` or ``"sigmoid"`` when the model's output squashes the logits
        (a Dense with that activation, a Softmax or Activation layer), else None."""
        kind, path = self.logits
        if kind == "output":
            return None
        layer = next((ref.layer for ref in self.layers if ref.path == path), None)
        if isinstance(layer, keras.layers.Softmax):
            return "softmax"
        name = _activation_name(getattr(layer, "activation", None))
        return name if name in _SQUASHING else None


def graph_kind(layer) -> str | None:
    """``"functional"`` or ``"sequential"`` for models whose graph can be walked (one input,
    the standard ``call``), else None (a leaf)."""
    if isinstance(layer, keras.Sequential):
        return "sequential" if layer.layers else None
    if not isinstance(layer, keras.Model) or not hasattr(layer, "_run_through_graph"):
        return None
    functional_call = _functional_call()
    if functional_call is not None and type(layer).call is not functional_call:
        return None
    try:
        return "functional" if len(layer.inputs) == 1 else None
    except (AttributeError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _functional_call():
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - layout of a future Keras
        return None
    return Functional.call


def _output_shape(layer):
    try:
        kind = graph_kind(layer)
        out = layer.outputs if kind else layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            return None
        out = out[0]
    shape = getattr(out, "shape", None)
    return None if shape is None else tuple(shape)


def walk_layers(model, prefix=""):
    """Every layer of ``model`` and of the Functional / Sequential models nested in it
    (input layers aside), depth first in layer order, as `LayerRef`s."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = f"{prefix}{layer.name}"
        yield LayerRef(path, layer, _output_shape(layer))
        if graph_kind(layer):
            yield from walk_layers(layer, path + SEPARATOR)


def feature_layers(model):
    """Paths of the layers whose output is one 4-D tensor ``[B, h, w, C]``."""
    return [ref.path for ref in walk_layers(model) if ref.shape is not None and len(ref.shape) == 4]


def _candidates(model, wanted, limit=8):
    spatial = feature_layers(model)
    close = difflib.get_close_matches(wanted, spatial, n=3, cutoff=0.5)
    last = [p for p in spatial[-limit:] if p not in close]
    shown = close + last
    return (", ".join(shown) + (f" (of {len(spatial)})" if len(spatial) > len(shown) else "")
            if shown else "none")


def resolve_layer(model, layer) -> LayerRef:
    """The layer named ``layer``: a path ``"sub/.../name"``, or a bare name found at the
    top level first, else anywhere in the nested models (it must be unique there).

    Raises:
      ValueError: no such layer (the 4-D candidates are listed), an ambiguous name,
        or a layer whose output is not one ``[B, h, w, C]`` tensor.
    """
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer: expected a layer name or a path 'submodel/layer', received {layer!r}")
    refs = list(walk_layers(model))
    if SEPARATOR in layer:
        found = [r for r in refs if r.path == layer]
    else:
        found = [r for r in refs if r.path == layer] or [r for r in refs if r.names[-1] == layer]
    if not found:
        raise ValueError(f"layer: model {model.name!r} has no layer {layer!r}; layers with a "
                         f"[B, h, w, C] output: {_candidates(model, layer)}")
    if len(found) > 1:
        raise ValueError(f"layer: {layer!r} names {len(found)} layers of model {model.name!r} "
                         f"({', '.join(r.path for r in found)}); pass the full path")
    ref = found[0]
    if ref.shape is None or len(ref.shape) != 4:
        shape = "several or unknown outputs" if ref.shape is None else f"output shape {ref.shape}"
        raise ValueError(f"layer: {ref.path!r} ({type(ref.layer).__name__}) has {shape}, not a "
                         f"[B, h, w, C] feature map with spatial dimensions; candidates: "
                         f"{_candidates(model, layer)}")
    return ref


def _output_names(model):
    names = []
    for i, t in enumerate(model.outputs):
        history = getattr(t, "_keras_history", None)
        op = getattr(history, "operation", None)
        names.append(getattr(op, "name", f"output_{i}"))
    return names


def output_index(model, output=None) -> int:
    """Index of the class-score output: ``output`` (an index or an output layer's name),
    or 0 for a single-output model.

    Raises:
      ValueError: a multi-output model without ``output``, or an unknown ``output``.
    """
    names = _output_names(model)
    if output is None:
        if len(names) != 1:
            raise ValueError(f"output: model {model.name!r} has {len(names)} outputs {names}; "
                             "pass output= (an index or one of these names) to say which gives "
                             "the class scores")
        return 0
    if isinstance(output, str):
        if output not in names:
            raise ValueError(f"output: model {model.name!r} has no output {output!r}; its outputs: {names}")
        return names.index(output)
    if isinstance(output, bool) or not isinstance(output, int) or not -len(names) <= output < len(names):
        raise ValueError(f"output: expected an index in [0, {len(names)}) or one of {names}, "
                         f"received {output!r}")
    return output % len(names)


def _activation_name(fn):
    try:
        name = keras.activations.serialize(fn)
    except (ValueError, TypeError):
        return getattr(fn, "__name__", "")
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name", ""))
    return name if isinstance(name, str) else getattr(fn, "__name__", "")


def _squashes(layer) -> str | None:
    """``"dense"`` for a Dense with a softmax / sigmoid activation, ``"input_of"`` for a
    softmax / sigmoid layer, else None."""
    if isinstance(layer, keras.layers.Dense):
        return "dense" if _activation_name(layer.activation) in _SQUASHING else None
    if isinstance(layer, keras.layers.Softmax):
        return "input_of"
    if isinstance(layer, keras.layers.Activation):
        return "input_of" if _activation_name(layer.activation) in _SQUASHING else None
    return None


def find_head(model, output=0) -> Head:
    """Walks back from the class-score output ``model.outputs[output]`` through
    single-input layers (into and out of nested models) to the last 4-D tensor."""
    t = model.outputs[output]
    shape = tuple(t.shape)
    num_classes = shape[-1] if len(shape) == 2 else None
    frames = []    # (nested model, its outer node, its path prefix)
    head = []      # from the output backwards
    problem = ""
    features = None
    while True:
        history = getattr(t, "_keras_history", None)
        op = getattr(history, "operation", None)
        if op is None or isinstance(op, keras.layers.InputLayer):
            if not frames:
                problem = "reached the model input"
                break
            _, outer, _ = frames.pop()
            inputs = outer.input_tensors
            if len(inputs) != 1:
                problem = f"nested model input has {len(inputs)} tensors"
                break
            t = inputs[0]
            continue
        node = op._inbound_nodes[history.node_index]
        prefix = frames[-1][2] if frames else ""
        if graph_kind(op):
            frames.append((op, node, f"{prefix}{op.name}{SEPARATOR}"))
            inner = op.outputs
            t = inner[history.tensor_index] if isinstance(inner, (list, tuple)) else inner
            continue
        ref = LayerRef(f"{prefix}{op.name}", op, tuple(t.shape))
        if len(t.shape) == 4:
            features = ref
            break
        head.append(ref)
        inputs = node.input_tensors
        if len(inputs) != 1:
            problem = f"{ref.path} ({type(op).__name__}) has {len(inputs)} inputs"
            break
        t = inputs[0]
    logits = ("output", None)
    if head:
        kind = _squashes(head[0].layer)
        if kind:
            logits = (kind, head[0].path)
    return Head(features, tuple(reversed(head)), logits, num_classes, problem)


def _accepts_training(layer) -> bool:
    return _call_parameters(type(layer)).get("training", False)


@functools.lru_cache(maxsize=None)
def _call_parameters(cls):
    try:
        params = inspect.signature(cls.call).parameters
    except (TypeError, ValueError):
        return {}
    return {"training": "training" in params}


def dense_logits(dense, x):
    """A Dense layer's pre-activation ``x @ kernel + bias`` in its compute dtype."""
    dtype = dense.compute_dtype
    x = tf.cast(x, dtype)
    y = tf.matmul(x, tf.cast(tf.convert_to_tensor(dense.kernel), dtype))
    if dense.use_bias:
        y = y + tf.cast(tf.convert_to_tensor(dense.bias), dtype)
    return y


class _Pass:
    """What one forward pass captures."""

    def __init__(self, target, logits_rule, override, tape):
        self.target = target
        self.logits_kind, self.logits_path = logits_rule
        self.override = override
        self.tape = tape
        self.features = None
        self.logits = None


class FeatureProbe:
    """``images -> (features, logits)`` from one forward pass (inference mode).

    Args:
      model: a Keras model with one image input.
      layer: the `LayerRef` of the feature map (`resolve_layer` / `find_head`).
      head: the model's `Head` (says how the logits are read).
      output: index of the class-score output.

    Calling it: ``probe(images, override=None, tape=None)``. ``override(features)``, if
    given, replaces the feature map before the rest of the network runs (Ablation-CAM);
    ``tape`` (a ``tf.GradientTape``) watches the feature map as it is produced, so
    gradients reach it even when the model's weights are frozen. Returns the feature
    map as computed (before ``override``) and the logits, in their compute dtypes.
    """

    def __init__(self, model, layer: LayerRef, head: Head, output: int = 0):
        self.model = model
        self.layer = layer
        self.head = head
        self.output = output
        self._target = layer.names

    def __call__(self, images, override=None, tape=None):
        state = _Pass(self._target, self.head.logits, override, tape)
        outputs = self._run(self.model, images, (), state)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[self.output]
        elif isinstance(outputs, dict):
            outputs = list(outputs.values())[self.output]
        if state.features is None:
            raise ValueError(f"layer: {self.layer.path!r} was not reached by the forward pass")
        logits = state.logits if state.logits is not None else outputs
        return state.features, logits

    def _run(self, model, x, names, state):
        if graph_kind(model) == "sequential":
            for layer in model.layers:
                x = self._call(layer, (x,), {}, names, state)
            return x

        def operation_fn(op):
            return lambda *args, **kwargs: self._call(op, args, kwargs, names, state)

        return model._run_through_graph([x], operation_fn=operation_fn)

    def _call(self, op, args, kwargs, names, state):
        key = names + (op.name,)
        path = SEPARATOR.join(key)
        if graph_kind(op):
            out = self._run(op, args[0], key, state)
            if isinstance(out, (list, tuple)) and len(out) == 1:
                out = out[0]
        elif state.logits_kind == "dense" and path == state.logits_path:
            state.logits = dense_logits(op, args[0])
            out = op.activation(state.logits)
        else:
            if _accepts_training(op):
                kwargs = dict(kwargs, training=False)
            out = op(*args, **kwargs)
        if state.logits_kind == "input_of" and path == state.logits_path:
            state.logits = args[0]
        if key == state.target:
            if state.tape is not None:
                state.tape.watch(out)
            state.features = out
            if state.override is not None:
                out = state.override(out)
        return out
