"""A residual sum and its ReLU as one kernel in training.

ResNet's blocks end in ``Add`` then ``Activation("relu")``: two passes over the block's
widest activation (TensorFlow's element-wise kernels, slow on bfloat16 on CPU), and in
a ResNet50 ``mixed_bfloat16`` training step they measured ~300 ms of ~2.4 s of op time.
``Add(relu=True)`` computes ``relu(a + b)`` itself: in training through one small
XLA-compiled function (one fused pass, vectorised bfloat16), at inference as plain
``AddV2`` + ``Relu`` so that grappler still fuses them into the preceding convolution
(what makes the folded export fast). The values are the same either way (the sum is
rounded once to the compute dtype, then clipped).

``fuse_add_relu_pairs(config)`` rewrites a functional model config: every
``keras.layers.Add`` whose only reader is an ``Activation("relu")`` becomes
``Add(relu=True)`` and that activation becomes ``"linear"`` (an identity); names are
kept, so the model's layer names, outputs and weights do not change (only the ``_add``
layer's own output is now after the ReLU).
"""
import keras
import tensorflow as tf

from keras_has.models.building import config_class_names, walk_tensor_references

_PACKAGE = "keras_has"


__all__ = ["Add", "fuse_add_relu_pairs"]


@tf.function(jit_compile=True, reduce_retracing=True)
def _xla_add_relu(a, b):
    return tf.nn.relu(a + b)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Add(keras.layers.Add):
    """``keras.layers.Add``, optionally followed by the ReLU of the sum (``relu=True``).

    Keeps Keras' class name (no variables either way); serialised as ``keras_has>Add``
    (alias ``AddReLU``).

    Args:
        relu: bool; True: the output is ``relu(sum of inputs)``. With exactly two inputs
            of one shape and dtype in training on TensorFlow, computed by one
            XLA-compiled kernel; otherwise by Keras' sum then ``tf.nn.relu``.
        Every other argument of ``keras.layers.Add``.

    Shapes:
        inputs: a list of tensors of one shape ``[B, ...]``; output: that shape.
    """

    def __init__(self, relu=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(relu, bool):
            raise ValueError(f"Add: `relu` must be a bool, received {relu!r}")
        self.relu = relu

    def call(self, inputs, training=None):
        if not self.relu:
            return super().call(inputs)
        if (
            training
            and keras.backend.backend() == "tensorflow"
            and len(inputs) == 2
            and inputs[0].shape == inputs[1].shape
            and inputs[0].dtype == inputs[1].dtype
        ):
            return _xla_add_relu(inputs[0], inputs[1])
        return tf.nn.relu(super().call(inputs))

    def get_config(self):
        config = super().get_config()
        config["relu"] = self.relu
        return config


AddReLU = Add


def _readers(config):
    """{layer name: names of the layers that take its output}."""
    readers = {layer["name"]: [] for layer in config["layers"]}
    for layer in config["layers"]:
        walk_tensor_references(
            layer.get("inbound_nodes", []),
            lambda tensor, reader=layer["name"]: readers.setdefault(tensor["keras_history"][0], []).append(reader),
        )
    return readers


def fuse_add_relu_pairs(config):
    """Rewrites ``config`` (a functional model's, in place): every ``keras.layers.Add``
    read only by an ``Activation("relu")`` computes the ReLU itself and the activation
    becomes linear. Returns the number of pairs fused."""
    layers = {layer["name"]: layer for layer in config["layers"]}
    output_layers = config.get("output_layers", [])
    if output_layers and isinstance(output_layers[0], str):  # a single output: [name, 0, 0]
        output_layers = [output_layers]
    outputs = {entry[0] for entry in output_layers}
    readers = _readers(config)
    names = config_class_names(Add)
    fused = 0
    for layer in config["layers"]:
        if (
            layer["class_name"] != "Add"
            or layer.get("module") != "keras.layers"
            or layer["name"] in outputs
            or len(layer.get("inbound_nodes", [])) != 1
        ):
            continue
        reader_names = readers.get(layer["name"], [])
        if len(reader_names) != 1:
            continue
        reader = layers[reader_names[0]]
        if (
            reader["class_name"] != "Activation"
            or reader.get("module") != "keras.layers"
            or reader["config"].get("activation") != "relu"
            or len(reader.get("inbound_nodes", [])) != 1
        ):
            continue
        layer.update(names)
        layer["config"]["relu"] = True
        reader["config"]["activation"] = "linear"
        fused += 1
    return fused

