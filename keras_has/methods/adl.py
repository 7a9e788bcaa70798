"""`adl`: Attention-based Dropout Layers (Choe & Shim, CVPR 2019).

`AttentionDropout` layers are inserted after named layers of the model (inside a
`keras.applications` backbone sub-model too) by rewriting the model's functional
config and copying every weight: wsolevaluation's positions where the backbone has
them (VGG16: after pool3, conv4_3 and conv5_3; ResNet50: after the first block of
layer3 and the first and last blocks of layer4), the analogous late blocks elsewhere
(`DEFAULT_LAYERS`), or the layers named by `adl_layers`. Identity at inference, so the
CAM is the baseline's.
"""
from __future__ import annotations

import copy

import keras

from keras_has.methods.base import Method
from keras_has.methods.layers import AttentionDropout
from keras_has.models.building import walk_tensor_references

# model name -> layers an ADL follows (tiny_gap's depend on its widths and pools).
DEFAULT_LAYERS = {
    "alexnet_gap": ("conv5_relu", "cam_features"),
    "vgg16_gap": ("block3_pool", "block4_conv3", "block5_conv3"),
    "resnet50_gap": ("conv4_block1_out", "conv5_block1_out", "conv5_block3_out"),
    "inceptionv3_gap": ("mixed6", "mixed7"),
    "mobilenetv2_gap": ("block_12_add", "block_15_add", "out_relu"),
}


__all__ = ["DEFAULT_LAYERS", "tiny_gap_layers", "default_layers", "insert_after", "Adl"]


def tiny_gap_layers(model_kwargs) -> tuple[str, ...]:
    """After the second-to-last block (its pooling when it has one) and after the last."""
    widths = tuple(model_kwargs.get("widths", (32, 64, 128, 256)))
    pools = model_kwargs.get("pools")
    pools = len(widths) - 1 if pools is None else pools
    if len(widths) < 2:
        return ("cam_features",)
    index = len(widths) - 2  # 0-based block index of the second-to-last block
    before = f"block{index + 1}_pool" if index < pools else f"block{index + 1}_relu"
    return (before, "cam_features")


def default_layers(model_name: str, model_kwargs) -> tuple[str, ...] | None:
    if model_name == "tiny_gap":
        return tiny_gap_layers(model_kwargs)
    return DEFAULT_LAYERS.get(model_name)


def _insert(config: dict, target: str, new_layer: dict, output) -> bool:
    """Inserts `new_layer` after `target` in a functional config (recursing into nested
    functional models); returns whether `target` was found."""
    layers = config["layers"]
    for i, layer in enumerate(layers):
        if layer["config"].get("name") == target or layer.get("name") == target:
            new = copy.deepcopy(new_layer)
            new["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
                "shape": list(output.shape), "dtype": output.dtype,
                "keras_history": [target, 0, 0]}}], "kwargs": {}}]
            name = new["name"]

            def rewire(tensor):
                history = list(tensor["keras_history"])
                if history[0] == target:
                    tensor["keras_history"] = [name, *history[1:]]

            for other in layers:
                if other is not layer:
                    walk_tensor_references(other.get("inbound_nodes", []), rewire)
            outputs = config["output_layers"]
            if outputs and isinstance(outputs[0], str):  # a single output: [name, 0, 0]
                if outputs[0] == target:
                    config["output_layers"] = [name, *outputs[1:]]
            else:
                config["output_layers"] = [[name, *o[1:]] if o[0] == target else o
                                           for o in outputs]
            layers.insert(i + 1, new)
            return True
    for layer in layers:
        inner = layer.get("config", {})
        if isinstance(inner, dict) and "layers" in inner and "output_layers" in inner:
            if _insert(inner, target, new_layer, output):
                return True
    return False


def _all_layers(model):
    out = {}
    for layer in model._flatten_layers(include_self=False):
        out.setdefault(layer.name, layer)
    return out


def insert_after(model, targets, make_layer):
    """A copy of the functional `model` with `make_layer(target)` inserted after each
    layer named in `targets` (its consumers read the new layer); weights are copied.

    Raises:
      ValueError: a target names no layer of the model (nested sub-models included).
    """
    config = copy.deepcopy(model.get_config())
    for target in targets:
        layer = make_layer(target)
        entry = keras.saving.serialize_keras_object(layer)
        entry["name"] = layer.name
        existing = _all_layers(model).get(target)
        if existing is None or not _insert(config, target, entry, existing.output):
            known = sorted(_all_layers(model))
            raise ValueError(f"adl_layers: model {model.name!r} has no layer {target!r}; "
                             f"expected names among its layers, e.g. {known[-12:]}")
    rebuilt = model.__class__.from_config(config)
    old = _all_layers(model)
    for name, layer in _all_layers(rebuilt).items():
        source = old.get(name)
        if source is not None and source.weights and not hasattr(source, "layers"):
            layer.set_weights(source.get_weights())
    return rebuilt


class Adl(Method):
    name = "adl"
    title = "ADL"
    hyperparameters = ("adl_threshold", "adl_drop_rate")

    def layers_for(self, model_name: str, model_kwargs) -> tuple[str, ...]:
        if self.config.adl_layers:
            return tuple(self.config.adl_layers)
        layers = default_layers(model_name, model_kwargs)
        if layers is None:
            raise ValueError(
                f"method: 'adl' has no insertion points for model {model_name!r} (it has "
                f"them for {sorted([*DEFAULT_LAYERS, 'tiny_gap'])}); name the layers to "
                "follow with --adl_layers")
        return layers

    def check(self, config) -> None:
        super().check(config)
        self.layers_for(config.model, config.model_kwargs)

    def build(self, model, seed=None, model_name=None, model_kwargs=None, **info):
        targets = self.layers_for(model_name or model.name, model_kwargs or {})
        policy = model.get_layer("cam_features").dtype_policy.name
        count = iter(range(len(targets)))

        def make(target):
            index = next(count)
            return AttentionDropout(
                drop_rate=self.config.adl_drop_rate, threshold=self.config.adl_threshold,
                seed=None if seed is None else int(seed) * 7919 + 100 + index,
                name=f"{target}_adl", dtype=policy)

        return insert_after(model, targets, make)
