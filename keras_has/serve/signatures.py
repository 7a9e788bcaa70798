"""Serving functions: an image in; class, score, box and CAM out (what exports carry).

`ServingFunctions(model, make_serving_config(model, ...))` holds the `tf.function`s that
`keras_has.serve.export.export_saved_model` writes into a SavedModel and that
`keras_has.serve.predict` also calls in memory on a `.keras` model. The model is any Keras
classifier the configured CAM method applies to (`keras_has.localize.cams.compute_cams`;
a Grad-CAM export needs no Python at serving time):

- `serving_default(images_bytes)`: `tf.string [N]`, each a JPEG or PNG of any size.
- `serving_images(images)`: `uint8 [N, H, W, 3]` RGB pixels.
- `cams_for_labels(images, labels)`: normalised float32 `[N, S, S, 3]` and int32 `[N]`
  -> `logits` `[N, K]` and `cams` `[N, h, w]` (each label's raw CAM, for evaluating an
  export).
- `cam_features(images)` (`cam` on keras-has models only): `logits` `[N, K]` and
  `class_cams` `[N, h, w, K]` (every class's raw CAM).

The first two decode, resize to the training image size (bilinear, antialiased, as the
evaluation pipeline does: `keras_has.data.pipeline.resize_image`), apply the run's input
preprocessing (`keras_has.data.preprocessing.Preprocessing`, constants in the graph and in
`assets/preprocessing.json`), compute the logits and the top class's map (`cam` on a
keras-has model: its CAM rule, `keras_has.localize.cams.CamRule`; otherwise the
configured method at the configured layer) and return, per image (`OUTPUT_KEYS`):

- `classes` int32 `[N, k]` and `scores` float32 `[N, k]`: top-k of the model's own
  probabilities (softmax of logits; a softmax / sigmoid output's values), best first;
- `class_names` string `[N, k]`: the names of `classes`;
- `boxes` int32 `[N, 4]`: `x0, y0, x1, y1` inclusive, in pixels of each INPUT image;
- `boxes_normalized` float32 `[N, 4]`: the model-frame box's pixel edges as fractions,
  `(x0 / W, y0 / H, (x1 + 1) / W, (y1 + 1) / H)`;
- `cams` float32 `[N, h, w]`: the top class's raw CAM at feature resolution;
- `image_sizes` int32 `[N, 2]`: `(height, width)` of each input image;
- `valid` bool `[N]`: whether the image was read; `error` string `[N]`: why not ("" when
  valid).

Bad images do not fail the batch: an input of `serving_default` that is not a JPEG or
PNG, claims more than `max_image_pixels` pixels, or does not decode (corrupt or
truncated data) gets `valid = False`, its reason in `error`, and zeros elsewhere
(`classes` -1, `class_names` "", `scores`, `boxes`, `boxes_normalized`, `cams` and
`image_sizes` 0); every other image of the batch is answered as if it came alone.
Decoding runs in a `tf.data` pipeline inside the graph whose `ignore_errors` drops the
images the decoder rejects, so the SavedModel needs no Python to survive them.

The box is the library's single-region rule in TensorFlow ops
(`keras_has.localize.boxes_tf`): the top class's CAM upsampled to the model size,
normalised (`cam_normalization`: min-max by default), thresholded at `cam_threshold`,
the largest 8-connected region's tight box, then mapped to each input image's frame
(`rescale_boxes`).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from keras_has.localize import cams as cam_lib
from keras_has.localize import boxes_tf as localization_tf
from keras_has.data.preprocessing import Preprocessing, make_preprocessing

__all__ = [
    "SERVING_DEFAULT", "SERVING_IMAGES", "CAM_FEATURES", "CAM_FEATURES_KEYS", "CAMS_FOR_LABELS",
    "OUTPUT_KEYS",
    "DEFAULT_MAX_IMAGE_PIXELS", "ServingConfig", "make_serving_config", "ServingFunctions",
    "resize_images", "decode_images", "read_export_settings", "export_preprocessing",
]

SERVING_DEFAULT = "serving_default"
SERVING_IMAGES = "serving_images"
CAM_FEATURES = "cam_features"
CAM_FEATURES_KEYS = ("logits", "class_cams")
CAMS_FOR_LABELS = "cams_for_labels"
OUTPUT_KEYS = (
    "classes",
    "scores",
    "class_names",
    "boxes",
    "boxes_normalized",
    "cams",
    "image_sizes",
    "valid",
    "error",
)
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# Where an export keeps its settings (written by keras_has.serve.export).
PREPROCESSING_ASSET = "preprocessing.json"
CLASS_NAMES_ASSET = "class_names.txt"

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Reasons an input of serving_default is not answered, by code (0: read).
NOT_AN_IMAGE, TOO_LARGE, UNDECODABLE = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Validated serving settings (what an export's `preprocessing.json` records).

    Args:
        image_size: `(height, width)` the model takes.
        preprocessing: the `keras_has.data.preprocessing.Preprocessing` from RGB pixels in
            [0, 255] to model inputs (the training run's).
        class_names: one name per class.
        cam_threshold: CAM threshold as a fraction of the max, in [0, 1].
        top_k: number of classes returned (capped at the number of classes).
        max_image_pixels: largest `height * width` that `serving_default` decodes.
        cam_method, cam_layer: the CAM method and its layer
            (`keras_has.localize.cams.compute_cams`), computed inside the signatures.
        cam_normalization: `minmax`, `max` or `ivr`, before the box.
        cam_output: the class-score output of a multi-output model (index or name).
    """

    image_size: tuple[int, int]
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    cam_threshold: float
    top_k: int
    max_image_pixels: int
    cam_method: str = "cam"
    cam_layer: str | None = None
    cam_normalization: str = "minmax"
    cam_output: int | str | None = None

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocessing.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocessing.std

    @property
    def channel_order(self) -> str:
        return self.preprocessing.channel_order

    def to_json(self) -> dict:
        return {
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "preprocessing": self.preprocessing.to_json(),
            "cam_threshold": self.cam_threshold,
            "cam_method": self.cam_method,
            "cam_layer": self.cam_layer,
            "cam_normalization": self.cam_normalization,
            "cam_output": self.cam_output,
            "top_k": self.top_k,
            "max_image_pixels": self.max_image_pixels,
            "resize_method": "bilinear, antialias=True, clipped to [0, 255]",
            "normalization": (f"(pixel - mean) / std, pixel in [0, 255], "
                              f"{self.channel_order.upper()} channel order"),
            "box_convention": "x0, y0, x1, y1 inclusive pixels of the input image",
            "invalid_inputs": "valid=false, the reason in error, zeros elsewhere "
                              "(classes -1, class_names empty)",
        }


def _as_image_size(image_size: Any) -> tuple[int, int]:
    message = (f"image_size: expected an int or a (height, width) pair of positive ints, "
               f"received {image_size!r}")
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(v) for v in image_size)
            exact = len(size) == 2 and all(float(v) == float(o)
                                          for v, o in zip(size, image_size))
        except (TypeError, ValueError):
            exact = False
        if not exact:
            raise ValueError(message)
    if min(size) < 1:
        raise ValueError(f"image_size: expected positive sizes, received {image_size!r}")
    return size


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def make_serving_config(
    model,
    *,
    image_size,
    mean=None,
    std=None,
    class_names=None,
    cam_threshold: float = 0.2,
    top_k: int = 5,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    preprocessing=None,
    cam_method: str = "cam",
    cam_layer: str | None = None,
    cam_normalization: str = "minmax",
    cam_output: int | str | None = None,
) -> ServingConfig:
    """Checks every serving argument against the model; raises ValueError naming it.

    The input preprocessing is either `preprocessing` (a
    `keras_has.data.preprocessing.Preprocessing`, e.g. the training run's) or `mean` / `std`
    (RGB dataset statistics in [0, 255] pixel scale, 3 floats each), not both.
    """
    if preprocessing is not None:
        if mean is not None or std is not None:
            raise ValueError("preprocessing: pass either preprocessing or mean/std, not both")
        if not isinstance(preprocessing, Preprocessing):
            raise ValueError(f"preprocessing: expected a keras_has.data.preprocessing."
                             f"Preprocessing, received {type(preprocessing).__name__}")
    elif mean is None or std is None:
        raise ValueError("mean/std: expected the preprocessing (or mean and std), received none")
    else:
        preprocessing = make_preprocessing("dataset", mean, std)
    from keras_has.localize.boxes import check_normalization

    check_normalization(cam_normalization)
    # Any Keras classifier: the plan checks the method, the layer and the head.
    num_classes = int(cam_lib.plan_cams(model, cam_method, cam_layer, cam_output).num_classes)
    input_shape = tuple(model.inputs[0].shape)
    size = _as_image_size(image_size)
    if len(input_shape) != 4 or input_shape[-1] != 3:
        raise ValueError(f"model: expected an input of shape [B, H, W, 3], received {input_shape}")
    fixed = tuple(input_shape[1:3])
    if any(v is not None for v in fixed) and fixed != size:
        raise ValueError(
            f"image_size: the model takes inputs of size {fixed}, received image_size={size}")
    if class_names is None:
        names = tuple(str(i) for i in range(num_classes))
    else:
        names = tuple(str(name) for name in class_names)
        if len(names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names (the classifier's "
                             f"classes), received {len(names)}")
        bad = [name for name in names if not name or "\n" in name]
        if bad:
            raise ValueError(f"class_names: names must be non-empty single lines, "
                             f"received {bad[:3]}")
    threshold = float(cam_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"cam_threshold: expected a fraction in [0, 1], "
                         f"received {cam_threshold!r}")
    if not _is_positive_int(top_k):
        raise ValueError(f"top_k: expected a positive int, received {top_k!r}")
    if not _is_positive_int(max_image_pixels):
        raise ValueError(f"max_image_pixels: expected a positive int, "
                         f"received {max_image_pixels!r}")
    return ServingConfig(image_size=size, preprocessing=preprocessing, class_names=names,
                         cam_threshold=threshold, top_k=min(int(top_k), num_classes),
                         max_image_pixels=int(max_image_pixels), cam_method=cam_method,
                         cam_layer=cam_layer, cam_normalization=cam_normalization,
                         cam_output=cam_output)


def read_export_settings(export_dir) -> dict:
    """An export's `assets/preprocessing.json` (image_size, mean, std, cam_threshold...).

    Raises:
        ValueError naming the file when it is missing, not JSON or lacks a key.
    """
    path = pathlib.Path(export_dir) / "assets" / PREPROCESSING_ASSET
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the export's preprocessing JSON: {error}") from None
    missing = [k for k in ("image_size", "mean", "std") if k not in settings]
    if missing:
        raise ValueError(f"{path}: expected keys image_size, mean, std; missing {missing}")
    return settings


def export_preprocessing(export_dir) -> Preprocessing:
    """The `Preprocessing` an export applies (exports from before it was recorded:
    their dataset statistics, RGB)."""
    settings = read_export_settings(export_dir)
    where = str(pathlib.Path(export_dir) / "assets" / PREPROCESSING_ASSET)
    if isinstance(settings.get("preprocessing"), dict):
        return Preprocessing.from_json(settings["preprocessing"], where=where)
    return Preprocessing.from_json({"mode": "dataset", "mean": settings["mean"],
                                    "std": settings["std"],
                                    "channel_order": settings.get("channel_order", "rgb")},
                                   where=where)


# ---------------------------------------------------------------------------
# Decoding and resizing, in graph ops.
# ---------------------------------------------------------------------------


def resize_images(images: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Resizes `[H, W, 3]` or `[N, H, W, 3]` images in [0, 255] to `size` as the
    evaluation pipeline does (`keras_has.data.pipeline.resize_image`), passing images
    already of `size` through (that resizing is the identity there; skipping it saves
    ~4 ms at 224x224). Returns float32 in [0, 255]."""
    from keras_has.data.pipeline import resize_image

    images = tf.convert_to_tensor(images)
    same_size = tf.reduce_all(tf.equal(tf.shape(images)[-3:-1], tf.constant(size, tf.int32)))

    def keep():
        return tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)

    return tf.cond(same_size, keep, lambda: resize_image(images, size))


def _image_dims_from_header(data: tf.Tensor) -> tf.Tensor:
    """`(height, width)` int64 read from a JPEG or PNG header without decoding."""
    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC)

    def png_dims():
        # IHDR: width and height are big-endian uint32 at bytes 16..24.
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.uint8), tf.int64)
        raw = tf.concat([raw, tf.zeros([8], tf.int64)], axis=0)[:8]
        weights = tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64)
        width = tf.reduce_sum(raw[:4] * weights)
        height = tf.reduce_sum(raw[4:] * weights)
        return tf.stack([height, width])

    def jpeg_dims():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    return tf.cond(is_png, png_dims, jpeg_dims)


def decode_images(images_bytes: tf.Tensor, size: Sequence[int],
                  max_image_pixels: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decodes and resizes a batch of encoded images; bad ones are marked, not raised.

    Args:
        images_bytes: string `[N]`, JPEG or PNG bytes.
        size: `(height, width)` to resize to.
        max_image_pixels: images whose header claims more pixels are not decoded.

    Returns:
        `(images float32 [N, *size, 3] in [0, 255], image_sizes int32 [N, 2],
        codes int32 [N])`: code 0 for a decoded image, else `NOT_AN_IMAGE`, `TOO_LARGE`
        or `UNDECODABLE` (its image and size are then zeros).
    """
    height, width = int(size[0]), int(size[1])
    max_pixels = tf.constant(int(max_image_pixels), tf.int64)
    count = tf.shape(images_bytes)[0]

    def rejected(code):
        return (tf.zeros([height, width, 3], tf.float32), tf.zeros([2], tf.int32),
                tf.constant(code, tf.int32))

    def decode_one(index, data):
        def checked():
            dims = _image_dims_from_header(data)  # an error here drops the element
            pixels = dims[0] * dims[1]

            def decoded():
                image = tf.io.decode_image(data, channels=3, expand_animations=False)
                image.set_shape([None, None, 3])
                resized = tf.ensure_shape(resize_images(image, (height, width)),
                                          [height, width, 3])
                return resized, tf.shape(image, out_type=tf.int32)[:2], tf.constant(0)

            return tf.cond(pixels > max_pixels, lambda: rejected(TOO_LARGE),
                           lambda: tf.cond(pixels > 0, decoded, lambda: rejected(UNDECODABLE)))

        has_magic = tf.logical_or(tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC),
                                  tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC))
        return (index, *tf.cond(has_magic, checked, lambda: rejected(NOT_AN_IMAGE)))

    # Images the decoder rejects (an error inside the map) are dropped by ignore_errors;
    # a sentinel element keeps the batch non-empty.
    dataset = (tf.data.Dataset.from_tensor_slices((tf.range(count), images_bytes))
               .map(decode_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .ignore_errors())
    sentinel = tf.data.Dataset.from_tensors((tf.constant(-1), *rejected(UNDECODABLE)))
    batch = dataset.concatenate(sentinel).batch(tf.cast(count, tf.int64) + 1)
    index, images, sizes, codes = batch.get_single_element()
    where = index[:-1, None]
    images = tf.scatter_nd(where, images[:-1], tf.stack([count, height, width, 3]))
    sizes = tf.scatter_nd(where, sizes[:-1], tf.stack([count, 2]))
    codes = tf.tensor_scatter_nd_update(tf.fill([count], UNDECODABLE), where, codes[:-1])
    return images, sizes, codes


# ---------------------------------------------------------------------------
# The serving functions.
# ---------------------------------------------------------------------------


class ServingFunctions:
    """The serving tf.functions for one model and its serving settings.

    Usable in memory (e.g. `keras_has.serve.predict` on a `.keras` model) and exported by
    `keras_has.serve.export.export_saved_model`.

    Args:
        model: any Keras classifier that `config.cam_method` applies to (a keras-has
            model, or e.g. a functional model around a `keras.applications` backbone).
        config: a `ServingConfig` (see `make_serving_config`).

    Attributes:
        serving_default: tf.function, `images_bytes` string `[N]` -> outputs dict.
        serving_images: tf.function, `images` uint8 `[N, H, W, 3]` -> outputs dict.
        cams_for_labels: tf.function, normalised `images` float32 `[N, S, S, 3]` and
            `labels` int32 `[N]` -> `{"logits": [N, K], "cams": [N, h, w]}` (float32,
            the raw CAM of each label: what evaluation scores).
        cam_features: for `cam_method="cam"` on a keras-has model only (else None):
            `images` -> `{"logits": [N, K], "class_cams": [N, h, w, K]}`.
        cam_model: the model the functions call (tracked by an export).

    Scores are the model's own probabilities: the softmax of logits, and a softmax or
    sigmoid output's values (not a second softmax over them).
    """

    def __init__(self, model, config: ServingConfig):
        self.config = config
        # The model's CAM rule (its method's when the model records one) for `cam` on
        # keras-has models; any other model or method through its `CamPlan`.
        self._plan = cam_lib.plan_cams(model, config.cam_method, config.cam_layer,
                                       config.cam_output)
        self._rule = cam_lib.cam_rule(model) if self._plan.kind == "rule" else None
        self.cam_model = model if self._rule is None else self._rule.cam_model
        # `(images, class_ids or None) -> (cams, logits)`: the plan's one batched function.
        self._cam_fn = self._plan.function(cam_lib.DEFAULT_BATCH_SIZE)
        size = config.image_size
        self._names = tf.constant(list(config.class_names))
        self._errors = tf.constant([
            "",
            "not an image: expected JPEG or PNG bytes",
            f"too large: expected an image of at most {config.max_image_pixels} pixels",
            "cannot be decoded: corrupt or truncated image data",
        ])

        def from_bytes(images_bytes):
            resized, sizes, codes = decode_images(images_bytes, size, config.max_image_pixels)
            return self._predict(resized, sizes, codes)

        def from_images(images):
            shape = tf.shape(images)
            check = tf.debugging.Assert(
                tf.logical_and(shape[1] > 0, shape[2] > 0),
                ["images: expected a non-empty [N, H, W, 3] uint8 batch; received shape", shape],
            )
            with tf.control_dependencies([check]):
                resized = resize_images(images, size)
            sizes = tf.tile(shape[None, 1:3], [shape[0], 1])
            return self._predict(resized, sizes, tf.zeros([shape[0]], tf.int32))

        self.serving_default = tf.function(
            from_bytes,
            autograph=False,
            input_signature=[tf.TensorSpec([None], tf.string, name="images_bytes")],
        )
        self.serving_images = tf.function(
            from_images,
            autograph=False,
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
        )
        image_spec = tf.TensorSpec([None, size[0], size[1], 3], tf.float32, name="images")
        self.cam_features = None if self._rule is None else tf.function(
            self._class_cams, autograph=False, input_signature=[image_spec])
        self.cams_for_labels = tf.function(
            self._cams_for_labels, autograph=False,
            input_signature=[image_spec, tf.TensorSpec([None], tf.int32, name="labels")])

    def _class_cams(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits, features = self._rule.forward(images, training=False)
        return {"logits": logits, "class_cams": self._rule.class_cams(features)}

    def _cams_and_logits(self, images: tf.Tensor, class_ids) -> tuple:
        """`(cams [N, h, w], logits [N, K])`, float32; `class_ids` None: the top-1."""
        cams, logits = self._cam_fn(images, class_ids)
        return tf.cast(cams, tf.float32), tf.cast(logits, tf.float32)

    def _cams_for_labels(self, images: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
        cams, logits = self._cams_and_logits(images, labels)
        return {"logits": logits, "cams": cams}

    def _predict(self, resized: tf.Tensor, image_sizes: tf.Tensor,
                 codes: tf.Tensor) -> dict[str, tf.Tensor]:
        config = self.config
        images = config.preprocessing.apply(resized)
        # Convolutions reject empty batches; run one blank image then and drop it.
        count = tf.shape(images)[0]
        blank = tf.zeros([1, *config.image_size, 3], tf.float32)
        images = tf.cond(count > 0, lambda: images, lambda: blank)
        # The CAM of the top-1 class (argmax of the logits, the first of top_k's classes).
        cams, logits = self._cams_and_logits(images, None)
        logits, cams = logits[:count], cams[:count]
        scores, classes = tf.math.top_k(self._plan.probabilities(logits), k=config.top_k)
        finite = tf.reduce_all(tf.math.is_finite(cams), axis=[1, 2])  # on the small maps
        maps = localization_tf.normalize_cams_tf(
            localization_tf.resize_cams_tf(cams, config.image_size), finite,
            normalization=config.cam_normalization)
        boxes, found = localization_tf.largest_regions(maps, config.cam_threshold)
        height, width = config.image_size
        edges = tf.cast(tf.concat([boxes[:, :2], boxes[:, 2:] + 1], axis=1), tf.float32)
        normalized = edges / tf.constant([width, height, width, height], tf.float32)
        valid = tf.equal(codes, 0)
        found = tf.logical_and(found, valid)
        original = localization_tf.rescale_boxes(boxes, config.image_size, image_sizes)
        answered = valid[:, None]
        return {
            "classes": tf.where(answered, classes, -1),
            "scores": tf.where(answered, scores, 0.0),
            "class_names": tf.where(answered, tf.gather(self._names, classes), ""),
            "boxes": tf.where(found[:, None], original, 0),
            "boxes_normalized": tf.where(found[:, None], normalized, 0.0),
            "cams": tf.where(valid[:, None, None], cams, 0.0),
            "image_sizes": tf.where(answered, tf.cast(image_sizes, tf.int32), 0),
            "valid": valid,
            "error": tf.gather(self._errors, codes),
        }
