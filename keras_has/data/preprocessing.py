"""Input preprocessing: the map from RGB pixels in [0, 255] to the values a model sees.

Every mode of `keras.applications`' `preprocess_input`, and the dataset statistics used
for random initialisation, is a per-channel affine map after an optional channel
reversal, so one small record describes all of them:

    model_input[..., c] = (pixel[..., order[c]] - mean[c]) / std[c]

with `order = (0, 1, 2)` for RGB and `(2, 1, 0)` for BGR, and `mean`, `std` in the
model's channel order. The modes:

- `dataset`: `(pixel - mean) / std` with the training split's statistics (RGB);
- `caffe` (VGG16, ResNet50 weights): RGB -> BGR, minus the ImageNet BGR mean pixel
  `(103.939, 116.779, 123.68)`, no scaling;
- `tf` (MobileNetV2, InceptionV3 weights): `pixel / 127.5 - 1`, in [-1, 1];
- `torch`: `(pixel / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)`;
- `none`: the pixels as they are (RGB in [0, 255]), for a model that holds its own
  preprocessing (e.g. a `Rescaling` layer).

`auto` (what training uses by default) picks the backbone's mode when pretrained
weights are loaded and `dataset` otherwise (`resolve_mode`). The resolved record is
written with the run (`preprocessing.json`) and into every export's assets, so
evaluation, export and prediction read it instead of re-deriving it.

Hide-and-Seek fills hidden pixels with the dataset's mean pixel expressed in the model's
value space (`Preprocessing.value_of(dataset_mean)`): 0 in every channel for `dataset`,
other values for the pretrained modes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "MODES",
    "BACKBONE_MODES",
    "Preprocessing",
    "make_preprocessing",
    "resolve_mode",
]

MODES = ("auto", "dataset", "caffe", "tf", "torch", "none")
CHANNEL_ORDERS = ("rgb", "bgr")
# keras.applications' preprocess_input mode of each pretrained model of the registry.
BACKBONE_MODES = {
    "vgg16_gap": "caffe",
    "resnet50_gap": "caffe",
    "inceptionv3_gap": "tf",
    "mobilenetv2_gap": "tf",
}
# ImageNet RGB mean and std in [0, 255] (torchvision's constants x 255).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _triple(name: str, values: Any, positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ValueError(f"preprocessing {name}: expected 3 finite per-channel numbers, "
                         f"received {values!r}")
    if positive and min(out) <= 0:
        raise ValueError(f"preprocessing {name}: expected 3 positive numbers, received {values!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A per-channel affine map from RGB pixels in [0, 255] to model inputs.

    `model_input[..., c] = (pixel[..., order[c]] - mean[c]) / std[c]`, `order` given by
    `channel_order`.

    Args:
      mode: a name from `MODES` other than `auto` (recorded; the numbers below define
        the map).
      mean: 3 floats, subtracted in the model's channel order, pixel scale.
      std: 3 positive floats, the divisors in the model's channel order.
      channel_order: `rgb` or `bgr`, the channel order the model sees.

    Shapes: `apply` takes `[..., 3]` RGB pixels (any float or integer dtype) and returns
    float32 `[..., 3]`; `to_pixels` is its inverse.
    """

    mode: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "rgb"

    def __post_init__(self):
        if self.mode not in MODES or self.mode == "auto":
            raise ValueError(f"preprocessing: expected one of {list(MODES[1:])}, "
                             f"received {self.mode!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"preprocessing channel_order: expected one of "
                             f"{list(CHANNEL_ORDERS)}, received {self.channel_order!r}")
        object.__setattr__(self, "mean", _triple("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _triple("std", self.std, positive=True))

    @property
    def reverses_channels(self) -> bool:
        return self.channel_order == "bgr"

    def apply(self, images):
        """RGB pixels `[..., 3]` in [0, 255] -> float32 model inputs (TensorFlow ops)."""
        import tensorflow as tf

        images = tf.cast(images, tf.float32)
        if self.reverses_channels:
            images = tf.reverse(images, axis=[-1])
        return (images - _channel_constant(self.mean, images)) / _channel_constant(self.std, images)

    def apply_numpy(self, images) -> np.ndarray:
        """`apply` in NumPy (float32)."""
        images = np.asarray(images, np.float32)
        if self.reverses_channels:
            images = images[..., ::-1]
        return ((images - np.asarray(self.mean, np.float32))
                / np.asarray(self.std, np.float32)).astype(np.float32)

    def to_pixels(self, inputs) -> np.ndarray:
        """Model inputs `[..., 3]` -> RGB uint8 pixels (clipped), e.g. for galleries."""
        pixels = (np.asarray(inputs, np.float32) * np.asarray(self.std, np.float32)
                  + np.asarray(self.mean, np.float32))
        if self.reverses_channels:
            pixels = pixels[..., ::-1]
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)

    def value_of(self, rgb_pixel: Sequence[float]) -> tuple[float, float, float]:
        """One RGB pixel in [0, 255] expressed in the model's value space (3 floats).

        With the dataset's mean pixel this is Hide-and-Seek's fill value.
        """
        pixel = _triple("pixel", rgb_pixel, positive=False)
        return tuple(float(v) for v in self.apply_numpy(np.asarray(pixel)))

    def to_json(self) -> dict:
        return {"mode": self.mode, "mean": list(self.mean), "std": list(self.std),
                "channel_order": self.channel_order,
                "formula": "(pixel[..., order] - mean) / std; pixel RGB in [0, 255]; "
                           "order reverses the channels when channel_order is 'bgr'"}

    @classmethod
    def from_json(cls, values: Mapping[str, Any], where: str = "preprocessing") -> "Preprocessing":
        """Inverse of `to_json` (extra keys ignored); errors name `where`."""
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: expected a JSON object, received {values!r}")
        missing = [k for k in ("mode", "mean", "std") if k not in values]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        try:
            return cls(mode=values["mode"], mean=values["mean"], std=values["std"],
                       channel_order=values.get("channel_order", "rgb"))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def resolve_mode(mode: str, model: str, pretrained: bool) -> str:
    """The concrete mode for a configured one.

    `auto`: the backbone's `keras.applications` mode (`BACKBONE_MODES`) when
    `pretrained`, else `dataset`. Other modes are returned as they are.

    Raises:
      ValueError: unknown `mode`, or a pretrained `model` whose mode is not known under
        `auto`.
    """
    if mode not in MODES:
        raise ValueError(f"preprocessing: expected one of {list(MODES)}, received {mode!r}")
    if mode != "auto":
        return mode
    if not pretrained:
        return "dataset"
    if model not in BACKBONE_MODES:
        raise ValueError(f"preprocessing: 'auto' does not know the pretrained weights' "
                         f"preprocessing of model {model!r} (known: {sorted(BACKBONE_MODES)}); "
                         f"pass one of {list(MODES[1:])}")
    return BACKBONE_MODES[model]


def make_preprocessing(mode: str, dataset_mean=None, dataset_std=None) -> Preprocessing:
    """The `Preprocessing` of a concrete `mode`.

    Args:
      mode: `dataset`, `caffe`, `tf`, `torch` or `none`.
      dataset_mean, dataset_std: RGB statistics in [0, 255]; required for `dataset`.
    """
    if mode == "dataset":
        if dataset_mean is None or dataset_std is None:
            raise ValueError("preprocessing 'dataset': needs the dataset's mean and std")
        return Preprocessing("dataset", dataset_mean, dataset_std, "rgb")
    if mode == "caffe":
        return Preprocessing("caffe", _CAFFE_BGR_MEAN, (1.0, 1.0, 1.0), "bgr")
    if mode == "tf":
        return Preprocessing("tf", (127.5,) * 3, (127.5,) * 3, "rgb")
    if mode == "none":
        return Preprocessing("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "rgb")
    if mode == "torch":
        return Preprocessing("torch", tuple(255.0 * m for m in _TORCH_MEAN),
                             tuple(255.0 * s for s in _TORCH_STD), "rgb")
    raise ValueError(f"preprocessing: expected one of {list(MODES[1:])}, received {mode!r}")


def _channel_constant(values, images):
    """Per-channel `values` (3 floats) as a float32 constant that broadcasts cheaply
    against `images` `[..., H, W, 3]`: a scalar when the three are equal, else the whole
    `[H, W, 3]` plane when H and W are static, else `[3]`. Each element gets the same
    value either way (the same arithmetic, bit for bit); TensorFlow's CPU kernels
    broadcast along a last axis of 3 about 3x slower than a same-shape or scalar
    operand (docs/design/performance.md, "End to end"). A traced graph (a tf.data map,
    an export's signature) holds the plane as a constant: H * W * 3 floats, 0.6 MB at
    224 px, for modes whose channels differ."""
    import tensorflow as tf

    if len(set(values)) == 1:
        return tf.constant(values[0], tf.float32)
    shape = images.shape
    if shape.rank is not None and shape.rank >= 3 and shape[-3] is not None and shape[-2] is not None:
        plane = np.broadcast_to(np.asarray(values, np.float32), (shape[-3], shape[-2], 3))
        return tf.constant(plane)
    return tf.constant(values, tf.float32)
