"""TFDS-backed sources: the built-in synthetic dataset and TFDS datasets with boxes.

Each converts its TFDS examples to the common raw format of `keras_has.data.sources`
(boxes in inclusive pixels of the decoded image). TFDS normalised boxes
`(ymin, xmin, ymax, xmax)` cover the continuous span `[xmin * W, xmax * W)`, i.e. the
pixels `floor(xmin * W) .. ceil(xmax * W) - 1`, clipped to the image.

Nothing downloads unless `download=True` is passed (the synthetic builder generates
locally and is prepared on first use).
"""
from __future__ import annotations

import os

import tensorflow as tf

from keras_has.data import wsol_metadata
from keras_has.data.sources import (AUTOTUNE, Source, check_complete_image, decode_image,
                                    mask_tight_box)
from keras_has.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_SHUFFLE_BUFFER = 256


__all__ = ["DEFAULT_SHUFFLE_BUFFER", "normalized_to_pixel_boxes", "TfdsSource",
           "CaltechBirdsSource", "StanfordDogsSource", "OxfordPetSource", "ImageNetSource",
           "SyntheticSource", "FACTORIES"]


def normalized_to_pixel_boxes(bbox: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """TFDS `[N, 4]` (ymin, xmin, ymax, xmax) in [0, 1] -> float32 `[N, 4]` inclusive pixels.

    Coordinates given in the wrong order are sorted first (TFDS mock data produces them).
    """
    bbox = tf.reshape(tf.cast(bbox, tf.float32), [-1, 4])
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    ymin = tf.minimum(bbox[:, 0], bbox[:, 2])
    ymax = tf.maximum(bbox[:, 0], bbox[:, 2])
    xmin = tf.minimum(bbox[:, 1], bbox[:, 3])
    xmax = tf.maximum(bbox[:, 1], bbox[:, 3])
    x0 = tf.clip_by_value(tf.floor(xmin * w), 0.0, w - 1.0)
    y0 = tf.clip_by_value(tf.floor(ymin * h), 0.0, h - 1.0)
    x1 = tf.maximum(tf.clip_by_value(tf.math.ceil(xmax * w) - 1.0, 0.0, w - 1.0), x0)
    y1 = tf.maximum(tf.clip_by_value(tf.math.ceil(ymax * h) - 1.0, 0.0, h - 1.0), y0)
    return tf.stack([x0, y0, x1, y1], axis=1)


class TfdsSource(Source):
    """A TFDS dataset converted to the common raw format.

    Args:
      name: TFDS dataset name.
      data_dir: TFDS data folder (None: TFDS's default).
      download: call `download_and_prepare` first (needs network, or `manual_dir` data).
      manual_dir: folder with manually downloaded files (imagenet2012).
      shuffle_buffer: decoded examples held for shuffling (after file-level shuffling).
      builder_kwargs: extra arguments for `tfds.builder`.
      builder: an already constructed TFDS builder to use instead of `tfds.builder(name)`.
    """

    default_splits = ("train", "test")
    stats_split = "train"

    def __init__(self, name: str, data_dir=None, download: bool = False, manual_dir=None,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, builder_kwargs=None, builder=None):
        import tensorflow_datasets as tfds

        self.name = name
        self._data_dir = None if data_dir is None else os.fspath(data_dir)
        if builder is None:
            builder = tfds.builder(name, data_dir=self._data_dir, **(builder_kwargs or {}))
        self._builder = builder
        if download or manual_dir is not None:
            config = tfds.download.DownloadConfig(
                manual_dir=None if manual_dir is None else os.fspath(manual_dir))
            self._builder.download_and_prepare(download_config=config)
        info = self._builder.info
        label = info.features["label"]
        self.num_classes = int(label.num_classes)
        self.class_names = tuple(label.names)
        self.splits = tuple(info.splits.keys()) or self.default_splits
        if not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
            raise ValueError(f"`shuffle_buffer` must be a positive int; received {shuffle_buffer!r}.")
        self._shuffle_buffer = shuffle_buffer

    @property
    def builder(self):
        return self._builder

    def num_examples(self, split: str) -> int | None:
        splits = self._builder.info.splits
        return splits[split].num_examples if split in splits else None

    def stats_location(self, split: str) -> tuple:
        folder = self._builder.data_dir
        key = f"{self.name}_{self._builder.version}_{split}"
        fingerprint = f"{self.name}/{self._builder.version}/{split}/{self.num_examples(split)}"
        return (folder if os.path.isdir(folder) else None), key, fingerprint

    def _as_dataset(self, split: str, shuffle: bool, seed):
        import tensorflow_datasets as tfds

        read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True)
        try:
            # Images are decoded in `_base`, after a check that names a truncated one.
            ds = self._builder.as_dataset(split=split, shuffle_files=shuffle,
                                          read_config=read_config,
                                          decoders={"image": tfds.decode.SkipDecoding()})
        except AssertionError as e:  # TFDS's "not prepared" error
            raise FileNotFoundError(
                f"TFDS dataset {self.name!r} is not prepared in data_dir "
                f"{self._builder.data_dir!r}: pass download=True (or manual_dir=... for "
                f"manually downloaded data) to get_source. TFDS said: {e}") from None
        if shuffle:
            ds = ds.shuffle(self._shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        return ds

    def load(self, split: str, shuffle: bool = False, seed: int | None = None,
             decode_min_side: int | None = None) -> tf.data.Dataset:
        self.check_split(split)
        return self._as_dataset(split, shuffle, seed).map(
            self._convert, num_parallel_calls=AUTOTUNE)

    def _convert(self, ex) -> dict:
        raise NotImplementedError


def _base(ex, image_id_key, where):
    """The common fields of an example whose `image` is still encoded: the image is
    decoded after `check_complete_image`, so a truncated one fails naming its id."""
    image_id = ex[image_id_key]
    image = decode_image(check_complete_image(ex["image"], image_id, where))
    return {"image": image, "label": tf.cast(ex["label"], tf.int32),
            "image_id": image_id}, tf.shape(image)[0], tf.shape(image)[1]


class CaltechBirdsSource(TfdsSource):
    """`caltech_birds2011` (CUB-200-2011): one `bbox` per image."""

    def __init__(self, **kwargs):
        super().__init__("caltech_birds2011", **kwargs)

    def _convert(self, ex):
        out, h, w = _base(ex, "image/filename", self.name)
        out["boxes"] = normalized_to_pixel_boxes(ex["bbox"], h, w)
        return out


class StanfordDogsSource(TfdsSource):
    """`stanford_dogs`: `objects/bbox`, several boxes per image."""

    def __init__(self, **kwargs):
        super().__init__("stanford_dogs", **kwargs)

    def _convert(self, ex):
        out, h, w = _base(ex, "image/filename", self.name)
        out["boxes"] = normalized_to_pixel_boxes(ex["objects"]["bbox"], h, w)
        return out


class OxfordPetSource(TfdsSource):
    """`oxford_iiit_pet`: whole-body box from the trimap, or the head box.

    The trimap (`segmentation_mask`) holds 1 = pet, 2 = background, 3 = border. The
    object box is the tight box of pet + border pixels; `mask` is the pet, `ignore` the
    border (the uncertain ring, not scored). Masks of another size than the image are
    resized (nearest) to it.

    Args:
      boxes: "object" (whole body, default) or "part" (TFDS `head_bbox`).
    """

    def __init__(self, boxes: str = "object", **kwargs):
        if boxes not in ("object", "part"):
            raise ValueError(f"`boxes` must be 'object' or 'part'; received {boxes!r}.")
        self._box_kind = boxes
        self._part_args = dict(kwargs)
        super().__init__("oxford_iiit_pet", **kwargs)

    def has_masks(self, split: str) -> bool:
        return True

    def part_box_source(self) -> "OxfordPetSource":
        """The same images with each pet's head box (`boxes="part"`)."""
        return self if self._box_kind == "part" else OxfordPetSource("part", **self._part_args)

    def _convert(self, ex):
        out, h, w = _base(ex, "file_name", self.name)
        trimap = tf.image.resize(ex["segmentation_mask"], tf.stack([h, w]), method="nearest")
        trimap = trimap[:, :, 0]
        out["mask"] = tf.equal(trimap, 1)
        out["ignore"] = tf.equal(trimap, 3)
        if self._box_kind == "part":
            out["boxes"] = normalized_to_pixel_boxes(ex["head_bbox"], h, w)
        else:
            out["boxes"] = mask_tight_box(tf.logical_or(out["mask"], out["ignore"]))
        return out


class ImageNetSource(TfdsSource):
    """`imagenet2012`: labels from TFDS, boxes from a WSOL metadata folder.

    Args:
      boxes_root: WSOL metadata folder with the ILSVRC boxes (e.g. wsolevaluation's
        `metadata/ILSVRC` beside an empty or absent `images/`); None gives no boxes.
      boxes_splits: TFDS split -> WSOL split whose boxes it uses. Boxes are matched by
        file basename (TFDS `file_name` vs the WSOL image id's basename); images without
        a box line get `N = 0` boxes.
      manual_dir: folder with ILSVRC2012_img_{train,val}.tar (TFDS's manual download).
    """

    default_splits = ("train", "validation")
    fixed_normalization = (IMAGENET_MEAN, IMAGENET_STD)

    def __init__(self, boxes_root=None, boxes_splits=None, **kwargs):
        super().__init__("imagenet2012", **kwargs)
        self._boxes_root = None if boxes_root is None else os.fspath(boxes_root)
        self._boxes_splits = dict(boxes_splits or {"validation": "test"})
        self._tables = {}

    def _box_table(self, split):
        if split not in self._tables:
            wsol_split = self._boxes_splits.get(split)
            if self._boxes_root is None or wsol_split is None:
                self._tables[split] = None
            else:
                meta = wsol_metadata.read_split(self._boxes_root, wsol_split,
                                                num_classes=self.num_classes, verify="none")
                keys = tf.constant([os.path.basename(i) for i in meta.image_ids])
                table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        keys, tf.range(len(meta), dtype=tf.int64)), default_value=-1)
                ragged = tf.RaggedTensor.from_row_splits(
                    tf.constant(meta.box_values), tf.constant(meta.box_row_splits))
                self._tables[split] = (table, ragged)
        return self._tables[split]

    def load(self, split: str, shuffle: bool = False, seed: int | None = None,
             decode_min_side: int | None = None) -> tf.data.Dataset:
        self.check_split(split)
        lookup = self._box_table(split)

        def convert(ex):
            out, _, _ = _base(ex, "file_name", self.name)
            if lookup is None:
                out["boxes"] = tf.zeros([0, 4], tf.float32)
            else:
                table, ragged = lookup
                index = table.lookup(tf.strings.split(ex["file_name"], "/")[-1])
                out["boxes"] = tf.cond(index >= 0, lambda: ragged[tf.maximum(index, 0)],
                                       lambda: tf.zeros([0, 4], tf.float32))
            return out

        return self._as_dataset(split, shuffle, seed).map(convert, num_parallel_calls=AUTOTUNE)


class SyntheticSource(TfdsSource):
    """The built-in synthetic localization dataset (TFDS builder `keras_has_synthetic`).

    Generated locally (no network) on first use into `data_dir`.

    Args:
      boxes: "object" (whole object, default) or "part" (the discriminative part).
      data_dir: TFDS data folder for the generated data.
      builder: a constructed builder with the same features (e.g. a custom config);
        default `tfds.builder("keras_has_synthetic", data_dir=data_dir, **builder_kwargs)`.
      **builder_kwargs: passed to `tfds.builder` (e.g. `config="s96"`).
    """

    default_splits = ("train", "validation", "test")

    def __init__(self, boxes: str = "object", data_dir=None,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, builder=None, **builder_kwargs):
        if boxes not in ("object", "part"):
            raise ValueError(f"`boxes` must be 'object' or 'part'; received {boxes!r}.")
        if builder is None:
            try:
                import keras_has.data.synthetic  # noqa: F401  (registers the builder)
            except ImportError as e:
                raise ImportError(f"the synthetic source needs keras_has.data.synthetic: {e}") from e
        self._box_kind = boxes
        self._part_args = dict(data_dir=data_dir, shuffle_buffer=shuffle_buffer,
                               builder=builder, **builder_kwargs)
        super().__init__("keras_has_synthetic", data_dir=data_dir, download=False,
                         shuffle_buffer=shuffle_buffer, builder_kwargs=builder_kwargs,
                         builder=builder)
        self.name = "synthetic"
        self._prepare_locally()
        self.splits = tuple(self._builder.info.splits.keys()) or self.default_splits

    def _prepare_locally(self) -> None:
        """Generates the data on first use (a no-op once prepared), saying so in one line:
        TFDS' own lines speak of a download of unknown size, and nothing is downloaded."""
        import contextlib
        import io
        import logging

        # Before the first generation TFDS warns that the (empty) variant folder has no
        # dataset_info.json; the line below says what happens instead.
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        absl_logger.setLevel(logging.ERROR)
        try:
            prepared = self._builder.is_prepared()
        finally:
            absl_logger.setLevel(level)
        if prepared:
            return
        info = self._builder.builder_config
        what = ""
        if hasattr(info, "split_size"):
            total = sum(info.split_size(split) for split in ("train", "validation", "test"))
            what = f" ({total:,} images of {info.image_size} px, once)"
        print(f"generating the built-in dataset{what} in {self._builder.data_dir}", flush=True)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            self._builder.download_and_prepare()

    def has_masks(self, split: str) -> bool:
        return True

    def part_box_source(self) -> "SyntheticSource":
        """The same images with each object's part box (`boxes="part"`)."""
        if self._box_kind == "part":
            return self
        return SyntheticSource(boxes="part", **self._part_args)

    def stats_location(self, split: str) -> tuple:
        folder, key, fingerprint = super().stats_location(split)
        return folder, "synthetic_" + key, fingerprint

    def _convert(self, ex):
        out, h, w = _base(ex, "image_id", self.name)
        key = "object_box" if self._box_kind == "object" else "part_box"
        out["boxes"] = tf.reshape(tf.cast(ex[key], tf.float32), [1, 4])
        out["mask"] = ex["mask"][:, :, 0] > 127
        out["ignore"] = tf.zeros([h, w], tf.bool)
        return out


FACTORIES = {
    "synthetic": SyntheticSource,
    "caltech_birds2011": CaltechBirdsSource,
    "oxford_iiit_pet": OxfordPetSource,
    "stanford_dogs": StanfordDogsSource,
    "imagenet2012": ImageNetSource,
}
