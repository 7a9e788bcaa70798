"""Data sources: one registry, one per-example format.

`get_source(name_or_path, **kwargs)` returns a `Source` for the built-in `synthetic`
dataset, a TFDS dataset with boxes (`caltech_birds2011`, `oxford_iiit_pet`,
`stanford_dogs`, `imagenet2012`) or a WSOL metadata folder path.

Every source's `load(split)` yields the same raw examples (original image frame):

    image     uint8   [H, W, 3]   decoded RGB (grayscale, RGBA, CMYK are converted)
    label     int32   []
    boxes     float32 [N, 4]      x0, y0, x1, y1 inclusive pixels of this image (N >= 0)
    image_id  string  []
    mask      bool    [H, W]      only if `source.has_masks(split)`: object foreground
    ignore    bool    [H, W]      only if `source.has_masks(split)`: pixels not scored
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import tensorflow as tf

from keras_has.data import wsol_metadata

AUTOTUNE = tf.data.AUTOTUNE
# The split `WsolSource(val_fraction=...)` carves from `train`.
HELD_OUT_SPLIT = "val"


__all__ = ["AUTOTUNE", "HELD_OUT_SPLIT", "Source", "decode_image", "check_complete_image",
           "mask_tight_box", "WsolSource"]


class Source:
    """A dataset with class labels and ground-truth localization.

    Attributes:
      name: short name (registry name or folder path).
      num_classes: number of classes `K`; labels are in [0, K).
      class_names: `K` class names.
      splits: split names offered.
    """

    name: str
    num_classes: int
    class_names: tuple
    splits: tuple

    def has_masks(self, split: str) -> bool:
        """Whether `load(split)` examples carry `mask` and `ignore`."""
        return False

    # Prescribed input statistics `(mean, std)` (RGB, [0, 255]) instead of a pass over
    # the data (ImageNet's constants for imagenet2012); None: measure them.
    fixed_normalization: tuple | None = None

    def skipped_images(self) -> dict:
        """`{split: (image ids, ...)}` of the unreadable images skipped so far (sources
        built with `skip_corrupt=True`); empty when none were."""
        return {}

    def part_box_source(self) -> "Source | None":
        """The same data with boxes of the most discriminative part instead of the whole
        object (the built-in dataset), or None when the source has no part boxes in its
        splits (a WSOL folder keeps them in a split of its own, e.g. `test_head`)."""
        return None

    def load(self, split: str, shuffle: bool = False, seed: int | None = None,
             decode_min_side: int | None = None) -> tf.data.Dataset:
        """Raw examples of `split` in the common format (module docstring).

        Args:
          split: one of `self.splits`.
          shuffle: shuffle the example order (cheaply, before decoding), reshuffled on
            each iteration.
          seed: makes the shuffle order deterministic.
          decode_min_side: lets a source of large photos decode a JPEG at a reduced
            scale whose shorter side stays >= this (`decode_image`), boxes scaled alike;
            None: full size. Sources of small images may ignore it.
        """
        raise NotImplementedError

    def num_examples(self, split: str) -> int | None:
        return None

    def stats_location(self, split: str) -> tuple:
        """(folder next to the data or None, cache key, fingerprint) for normalisation stats."""
        return None, _safe(self.name), ""

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"source {self.name!r} has no split {split!r}; available "
                             f"splits: {list(self.splits)}.")

    def check_localized(self, split: str) -> None:
        """Raises when an image of `split` has no box (evaluation needs one per image)."""
        self.check_split(split)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, num_classes={self.num_classes}, "
                f"splits={list(self.splits)})")


def _safe(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text.strip("/"))
    return keep[-60:] + "_" + hashlib.sha1(text.encode()).hexdigest()[:8]


def decode_image(data: tf.Tensor, min_side: int | None = None) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 `[H, W, 3]` RGB.

    tf.io.decode_image converts grayscale to RGB, drops the alpha channel of RGBA PNGs
    and converts (Adobe, inverted) CMYK JPEGs to RGB, and it recognises the format from
    the content (so a PNG named `.jpg` works).

    Args:
      data: string scalar, the encoded image.
      min_side: None decodes at full size. Else a large JPEG is decoded at 1/2, 1/4 or
        1/8 scale by the decoder's DCT scaling (`tf.io.decode_jpeg(ratio=)`: far less
        time and memory than decoding a 60-megapixel photo whole), the smallest scale
        whose shorter side is still >= `min_side`; smaller JPEGs and other formats are
        decoded whole.
    """
    return _decode_scaled(data, min_side)[0]


def _decode_scaled(data: tf.Tensor, min_side: int | None):
    """`(image uint8 [H, W, 3], scale float32 [2])`: `decode_image`'s image and its size
    relative to the encoded one (height, width), for boxes to follow a reduced decode."""
    def whole():
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
        image.set_shape([None, None, 3])
        return image, tf.ones([2], tf.float32)

    if min_side is None:
        return whole()

    def reduced():
        full = tf.image.extract_jpeg_shape(data)[:2]
        short = tf.minimum(full[0], full[1])
        index = tf.add_n([tf.cast(short >= r * int(min_side), tf.int32) for r in (2, 4, 8)])
        branches = [lambda r=r: tf.ensure_shape(tf.io.decode_jpeg(data, channels=3, ratio=r),
                                                [None, None, 3]) for r in (1, 2, 4, 8)]
        image = tf.switch_case(index, branches)
        return image, tf.cast(tf.shape(image)[:2], tf.float32) / tf.cast(full, tf.float32)

    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), wsol_metadata.JPEG_MAGIC)
    return tf.cond(is_jpeg, reduced, whole)


def _last_positions(data: tf.Tensor, markers) -> list:
    """Byte offset of the last occurrence (-1: none) of each marker in uint8 `data`;
    the markers share their length and the comparisons with their common first bytes."""
    length = len(markers[0])
    data = tf.concat([tf.cast(data, tf.int32), tf.fill([length], -1)], axis=0)
    size = tf.size(data) - length + 1
    shifted = [data[i:i + size] for i in range(length)]
    out, prefix = [], {}
    for marker in markers:
        hits = tf.ones([size], tf.bool)
        for i, byte in enumerate(marker):
            key = bytes(marker[:i + 1])
            if key not in prefix:
                prefix[key] = tf.logical_and(hits, tf.equal(shifted[i], byte))
            hits = prefix[key]
        positions = tf.cast(tf.where(hits)[:, 0], tf.int32)
        out.append(tf.reduce_max(tf.concat([[-1], positions], axis=0)))
    return out


def check_complete_image(data: tf.Tensor, image_id: tf.Tensor, where: str) -> tf.Tensor:
    """`data` once it is known to be complete; else an InvalidArgumentError naming it.

    The in-graph twin of the WSOL folders' file check (`wsol_metadata.check_image`): a
    JPEG whose last EOI marker (FF D9) does not come after its last SOS marker (FF DA,
    the start of the image data; neither can occur inside the entropy-coded data), or a
    PNG without an IEND chunk in its last `wsol_metadata.END_WINDOW` bytes, was cut
    short, which the decoder would report without saying which image it was. The end of
    an EXIF thumbnail (an EOI before the main image's scan) does not count. Other
    formats pass unchecked.

    Args:
      data: string scalar, the encoded image.
      image_id: string scalar naming the image in errors (its file name or id).
      where: the source's name, for the error.
    """
    def jpeg_complete():
        end, scan = _last_positions(tf.io.decode_raw(data, tf.uint8), (b"\xff\xd9", b"\xff\xda"))
        return end > scan

    def png_complete():
        length = tf.strings.length(data)
        window = wsol_metadata.END_WINDOW
        tail = tf.strings.substr(data, tf.maximum(length - window, 0), window)
        return _last_positions(tf.io.decode_raw(tail, tf.uint8), (b"IEND",))[0] >= 0

    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), wsol_metadata.JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(data, 0, 8), wsol_metadata.PNG_MAGIC)
    complete = tf.cond(is_jpeg, jpeg_complete,
                       lambda: tf.cond(is_png, png_complete, lambda: tf.constant(True)))
    check = tf.debugging.Assert(complete, [
        f"{where}: image", image_id, "is truncated: no end marker after its image data "
        "(JPEG EOI after the scan / PNG IEND)"])
    with tf.control_dependencies([check]):
        return tf.identity(data)


def _decode_mask(path: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """A mask PNG -> bool [H, W] (nonzero is on, as wsolevaluation), resized if needed."""
    mask = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
    mask = tf.image.resize(mask, tf.stack([height, width]), method="nearest")
    return mask[:, :, 0] > 0


def mask_tight_box(mask: tf.Tensor) -> tf.Tensor:
    """bool `[H, W]` -> float32 `[1, 4]` tight inclusive box of the on pixels, `[0, 4]` if none."""
    rows = tf.where(tf.reduce_any(mask, axis=1))[:, 0]
    cols = tf.where(tf.reduce_any(mask, axis=0))[:, 0]
    box = tf.cast(tf.stack([tf.reduce_min(cols), tf.reduce_min(rows),
                            tf.reduce_max(cols), tf.reduce_max(rows)]), tf.float32)
    return tf.cond(tf.size(rows) > 0, lambda: box[None], lambda: tf.zeros([0, 4], tf.float32))


class WsolSource(Source):
    """A WSOL metadata folder (clovaai/wsolevaluation layout), validated per split on first use.

    Args:
      root: folder with `images/`, `metadata/<split>/` and optionally `class_names.txt`.
      num_classes: number of classes; None reads class_names.txt, else the largest label
        over all splits plus one.
      verify: image check before use: "header" (default), "decode" or "none".
      skip_corrupt: skip missing/corrupt images (counted in one log line) instead of failing.
      clip_boxes: clip boxes reaching more than 2 px outside their image (a warning per
        line) instead of failing.
      val_fraction: in [0, 1); above 0, a validation split `val` is carved from `train`
        (for tuning on a folder that has only train and test): a seeded, class-stratified
        `val_fraction` of the training images (`wsol_metadata.held_out_indices`), which
        `train` then no longer contains. The folder must have `train` and no `val`.
      val_seed: seed of that draw (the same seed gives the same split).
    """

    def __init__(self, root, num_classes: int | None = None, verify: str = "header",
                 skip_corrupt: bool = False, clip_boxes: bool = False,
                 val_fraction: float = 0.0, val_seed: int = 0):
        root = os.path.abspath(os.fspath(root))
        self.root = root
        self.name = root
        self.splits = wsol_metadata.list_splits(root)
        if not self.splits:
            raise wsol_metadata.MetadataError(
                f"WSOL metadata folder {root!r}: no split folders with image_ids.txt under "
                f"{os.path.join(root, 'metadata')!r}.")
        self.val_fraction, self.val_seed = float(val_fraction), int(val_seed)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a fraction in [0, 1) of the training "
                             f"images to hold out as 'val', received {val_fraction!r}")
        if self.val_fraction > 0:
            where = os.path.join(root, "metadata")
            if "train" not in self.splits:
                raise ValueError(f"val_fraction={self.val_fraction}: {where} has no 'train' "
                                 f"split to carve 'val' from (splits: {list(self.splits)})")
            if HELD_OUT_SPLIT in self.splits:
                raise ValueError(f"val_fraction={self.val_fraction}: {where} already has a "
                                 f"'{HELD_OUT_SPLIT}' split; tune on it (val_fraction=0)")
            self.splits = tuple(sorted(self.splits + (HELD_OUT_SPLIT,)))
        names = wsol_metadata.read_class_names(root)
        if num_classes is None:
            if names:
                num_classes = len(names)
            else:
                num_classes = 1 + max(self._max_label(s) for s in self.splits
                                      if not (s == HELD_OUT_SPLIT and self.val_fraction > 0))
        if names and len(names) != num_classes:
            raise ValueError(f"{os.path.join(root, 'class_names.txt')}: has {len(names)} names "
                             f"but num_classes={num_classes}.")
        self.num_classes = int(num_classes)
        self.class_names = names or tuple(str(i) for i in range(self.num_classes))
        self._verify = verify
        self._skip_corrupt = skip_corrupt
        self._clip_boxes = clip_boxes
        self._cache = {}

    def _max_label(self, split: str) -> int:
        path = os.path.join(self.root, "metadata", split, "class_labels.txt")
        best = 0
        for n, fields in wsol_metadata.read_lines(path):
            if len(fields) == 2:
                best = max(best, wsol_metadata.parse_int(fields[1], path, n, "class label"))
        return best

    def split_metadata(self, split: str) -> wsol_metadata.WsolSplit:
        """The validated metadata of `split` (read and checked once)."""
        self.check_split(split)
        if split not in self._cache:
            if self._carved(split):
                whole = wsol_metadata.read_split(
                    self.root, "train", num_classes=self.num_classes, verify=self._verify,
                    skip_corrupt=self._skip_corrupt, clip_boxes=self._clip_boxes)
                held = wsol_metadata.held_out_indices(whole.labels, self.val_fraction,
                                                      self.val_seed)
                rest = np.setdiff1d(np.arange(len(whole)), held)
                self._cache["train"] = whole.subset(rest, "train")
                self._cache[HELD_OUT_SPLIT] = whole.subset(held, HELD_OUT_SPLIT)
            else:
                self._cache[split] = wsol_metadata.read_split(
                    self.root, split, num_classes=self.num_classes, verify=self._verify,
                    skip_corrupt=self._skip_corrupt, clip_boxes=self._clip_boxes)
        return self._cache[split]

    def _carved(self, split: str) -> bool:
        """Whether `split` is one of the two halves of a `val_fraction` carve."""
        return self.val_fraction > 0 and split in ("train", HELD_OUT_SPLIT)

    def check_localized(self, split: str) -> None:
        self.split_metadata(split).check_localized()

    def has_masks(self, split: str) -> bool:
        return self.split_metadata(split).has_masks

    def skipped_images(self) -> dict:
        return {split: meta.skipped_ids for split, meta in sorted(self._cache.items())
                if meta.skipped_ids}

    def num_examples(self, split: str) -> int:
        return len(self.split_metadata(split))

    def stats_location(self, split: str) -> tuple:
        meta = self.split_metadata(split)
        # The image files' sizes and modification times are part of the key: replacing
        # or truncating an image invalidates the cached statistics.
        digest = hashlib.sha1()
        for image_id, path in zip(meta.image_ids, meta.image_paths):
            try:
                st = os.stat(path)
                digest.update(f"{image_id}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{image_id}\0missing\n".encode())
        fingerprint = digest.hexdigest()
        if self._carved(split):  # no folder of its own: cached only under a cache_dir
            key = f"{split}_carved_{self.val_fraction:g}_{self.val_seed}"
            return None, _safe(self.root) + "_" + key, fingerprint
        return os.path.join(self.root, "metadata", split), _safe(self.root) + "_" + split, fingerprint

    def load(self, split: str, shuffle: bool = False, seed: int | None = None,
             decode_min_side: int | None = None) -> tf.data.Dataset:
        meta = self.split_metadata(split)
        n = len(meta)
        # One row per image with everything `read` needs, so that its traced graph holds
        # no indexing ops (building a dataset costs ~0.4 ms of Python per traced op).
        splits = np.asarray(meta.box_row_splits, np.int64)
        columns = {
            "path": tf.constant(meta.image_paths, tf.string, shape=[n]),
            "image_id": tf.constant(list(meta.image_ids), tf.string, shape=[n]),
            "label": np.asarray(meta.labels, np.int32).reshape([n]),
            "box_begin": np.stack([splits[:-1], np.zeros(n, np.int64)], axis=1),
            "box_size": np.stack([splits[1:] - splits[:-1], np.full(n, 4, np.int64)], axis=1),
        }
        if meta.has_masks:  # the masks are looked up by the row's index
            columns["index"] = np.arange(n, dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices(columns)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        box_values = tf.constant(np.asarray(meta.box_values, np.float32).reshape([-1, 4]))
        if meta.has_masks:
            mask_lists = [list(m) for m in meta.mask_paths]
            masks = tf.ragged.constant(mask_lists, dtype=tf.string)
            ignores = tf.constant(list(meta.ignore_paths))

        def read(row):
            image, scale = _decode_scaled(tf.io.read_file(row["path"]), decode_min_side)
            item_boxes = tf.slice(box_values, row["box_begin"], row["box_size"])
            item_boxes.set_shape([None, 4])
            if decode_min_side is not None:  # boxes follow a reduced-scale decode
                item_boxes = item_boxes * tf.stack([scale[1], scale[0], scale[1], scale[0]])
            example = {"image": image, "label": row["label"], "boxes": item_boxes,
                       "image_id": row["image_id"]}
            if meta.has_masks:
                i = row["index"]
                h, w = tf.shape(image)[0], tf.shape(image)[1]
                instance = tf.map_fn(lambda p: _decode_mask(p, h, w), masks[i],
                                     fn_output_signature=tf.TensorSpec([None, None], tf.bool))
                mask = tf.reduce_any(instance, axis=0)
                ignore = tf.cond(
                    tf.strings.length(ignores[i]) > 0,
                    lambda: _decode_mask(ignores[i], h, w),
                    lambda: tf.zeros([h, w], tf.bool))
                example["mask"] = mask
                example["ignore"] = tf.logical_and(ignore, tf.logical_not(mask))
                # Mask splits carry no box lines: the object box is the mask's tight box.
                example["boxes"] = mask_tight_box(mask)
            return example

        # Plain Python control flow only: no autograph conversion (~15% of the build).
        return ds.map(tf.autograph.experimental.do_not_convert(read), num_parallel_calls=AUTOTUNE)
