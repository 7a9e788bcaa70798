"""Reading and validating WSOL metadata folders (the clovaai/wsolevaluation layout).

Layout::

    ROOT/images/<relpath>                       the images
    ROOT/metadata/<split>/image_ids.txt         <relpath>              (one per line)
    ROOT/metadata/<split>/class_labels.txt      <relpath>,<label>
    ROOT/metadata/<split>/image_sizes.txt       <relpath>,<w>,<h>      (optional)
    ROOT/metadata/<split>/localization.txt      <relpath>,x0,y0,x1,y1  (one line per box)
                                            or  <relpath>,<mask>,<ignore>  (one line per mask)
    ROOT/class_names.txt                        one class name per line (optional extra)

Boxes are `x0, y0, x1, y1` inclusive pixel corners of the original image. Mask paths are
resolved relative to ROOT first and then to ROOT/masks (wsolevaluation's `mask_root`);
several mask lines for one image are unioned, as wsolevaluation does.

Everything here is plain Python / NumPy run once, before training: every problem is
reported with the file and line it comes from.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import struct

import numpy as np

from keras_has.util.files import read_text_lines

logger = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_OTHER_MAGIC = (b"GIF87a", b"GIF89a", b"BM")
VERIFY_MODES = ("header", "decode", "exists", "none")


__all__ = ["JPEG_MAGIC", "PNG_MAGIC", "VERIFY_MODES", "MetadataError", "WsolSplit",
           "held_out_indices", "list_splits", "read_class_names", "read_lines", "parse_int",
           "image_header_size", "END_WINDOW", "check_image", "BOX_TOLERANCE", "read_split"]


class MetadataError(ValueError):
    """A WSOL metadata folder is malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class WsolSplit:
    """One validated split of a WSOL metadata folder.

    Args:
      root: the dataset root folder.
      split: the split name (a folder under ROOT/metadata).
      image_ids: `N` relative image paths (under ROOT/images), in image_ids.txt order.
      labels: int32 `[N]` class ids.
      sizes: int32 `[N, 2]` image `(width, height)`, or None when unknown.
      box_values: float32 `[T, 4]` all boxes (inclusive pixels, clipped to the image).
      box_row_splits: int64 `[N + 1]`; boxes of image `i` are
        `box_values[box_row_splits[i]:box_row_splits[i + 1]]`.
      mask_paths: None for box splits; else per image a tuple of absolute mask paths.
      ignore_paths: None for box splits; else per image an absolute ignore-mask path or "".
      num_clipped: boxes that reached outside their image and were clipped.
      num_skipped: corrupt or missing images skipped (only with `skip_corrupt=True`).
      skipped_ids: their image ids, in file order.
      unlocalized: `(image_id, line of image_ids.txt)` of the images with no box (or
        mask) line in localization.txt, in file order; a split that is evaluated must
        have none (`check_localized`).
    """

    root: str
    split: str
    image_ids: tuple
    labels: np.ndarray
    sizes: np.ndarray | None
    box_values: np.ndarray
    box_row_splits: np.ndarray
    mask_paths: tuple | None
    ignore_paths: tuple | None
    num_clipped: int = 0
    num_skipped: int = 0
    skipped_ids: tuple = ()
    unlocalized: tuple = ()

    def check_localized(self) -> None:
        """Raises MetadataError naming the first image without a box or mask line (an
        evaluated split needs at least one per image)."""
        if not self.unlocalized:
            return
        image_id, line = self.unlocalized[0]
        meta = os.path.join(self.root, "metadata", self.split)
        more = (f" ({len(self.unlocalized) - 1} more image(s) likewise)"
                if len(self.unlocalized) > 1 else "")
        raise MetadataError(
            f"{os.path.join(meta, 'localization.txt')}: image {image_id!r} (line {line} of "
            f"{os.path.join(meta, 'image_ids.txt')}) has no box line{more}; expected at "
            "least one box '<relpath>,x0,y0,x1,y1' per image of a split that is evaluated.")

    @property
    def has_masks(self) -> bool:
        return self.mask_paths is not None

    @property
    def image_paths(self) -> list:
        return [os.path.join(self.root, "images", i) for i in self.image_ids]

    def boxes(self, index: int) -> np.ndarray:
        return self.box_values[self.box_row_splits[index]:self.box_row_splits[index + 1]]

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, indices, split: str) -> "WsolSplit":
        """The images at `indices` (kept in that order) as a split named `split`."""
        indices = np.asarray(indices, np.int64).reshape([-1])
        starts, ends = self.box_row_splits[:-1], self.box_row_splits[1:]
        counts = (ends - starts)[indices]
        box_rows = np.concatenate([np.arange(starts[i], ends[i]) for i in indices]
                                  + [np.zeros([0], np.int64)]).astype(np.int64)
        chosen = set(self.image_ids[i] for i in indices)
        return dataclasses.replace(
            self, split=split,
            image_ids=tuple(self.image_ids[i] for i in indices),
            labels=np.asarray(self.labels)[indices],
            sizes=None if self.sizes is None else np.asarray(self.sizes)[indices],
            box_values=self.box_values[box_rows].reshape([-1, 4]),
            box_row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            mask_paths=None if self.mask_paths is None
            else tuple(self.mask_paths[i] for i in indices),
            ignore_paths=None if self.ignore_paths is None
            else tuple(self.ignore_paths[i] for i in indices),
            unlocalized=tuple(u for u in self.unlocalized if u[0] in chosen))


def held_out_indices(labels, fraction: float, seed: int) -> np.ndarray:
    """Indices (sorted) of a seeded, class-stratified `fraction` of the images: for each
    class, `floor(fraction * n_c + 0.5)` of its `n_c` images, at least one when `n_c >= 2` and
    never all of them. A pure function of `labels`, `fraction` and `seed`."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(int(seed))
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(np.floor(fraction * len(members) + 0.5))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        else:
            count = 0
        picked.extend(rng.permutation(members)[:count].tolist())
    return np.array(sorted(picked), np.int64)


def list_splits(root: str) -> tuple:
    """Split names under ROOT/metadata (folders holding an image_ids.txt), sorted."""
    meta = os.path.join(root, "metadata")
    if not os.path.isdir(meta):
        raise MetadataError(
            f"WSOL metadata folder {root!r}: expected a 'metadata' subfolder at {meta!r}; "
            "not found.")
    return tuple(sorted(d for d in os.listdir(meta)
                        if os.path.isfile(os.path.join(meta, d, "image_ids.txt"))))


def read_class_names(root: str) -> tuple | None:
    """ROOT/class_names.txt as a tuple (one name per line), or None when absent."""
    path = os.path.join(root, "class_names.txt")
    if not os.path.isfile(path):
        return None
    from keras_has.util.files import read_class_names as read_names_file

    try:
        return read_names_file(path)
    except ValueError as error:
        raise MetadataError(str(error)) from None


def read_lines(path: str, required: bool = True):
    """Yields (line_number, [fields]) for non-empty lines; missing optional file yields nothing."""
    if not os.path.isfile(path):
        if required:
            raise MetadataError(f"{path}: required metadata file not found.")
        return
    for n, line in enumerate(read_text_lines(path, MetadataError), start=1):
        line = line.strip()
        if line:
            yield n, [field.strip() for field in line.split(",")]


def parse_int(value: str, path: str, line: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise MetadataError(
            f"{path}:{line}: expected an integer {what}, received {value!r}.") from None


_SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


def _jpeg_segments(f):
    """Yields `(marker, offset)` for each marker segment of an open JPEG file up to and
    including the first SOS (start of scan, 0xDA), leaving `f` at the segment's payload
    (after its length field). Application segments (EXIF and its thumbnail, whose own
    markers include an EOI) are skipped by their length, never searched. Stops at EOF."""
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        offset = f.tell() - 2
        if marker == 0xD9:
            yield marker, offset
            return
        seg = f.read(2)
        if len(seg) < 2:
            return
        length = struct.unpack(">H", seg)[0]
        payload = f.tell()
        yield marker, offset
        if marker == 0xDA:
            return
        f.seek(payload + length - 2)


def image_header_size(path: str) -> tuple | None:
    """(width, height) read from a JPEG or PNG header, or None if not recognised/truncated."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head.startswith(PNG_MAGIC):
            if len(head) < 24 or head[12:16] != b"IHDR":
                return None
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h)
        if not head.startswith(JPEG_MAGIC):
            return None
        for marker, _ in _jpeg_segments(f):
            if marker in _SOF_MARKERS:
                data = f.read(5)
                if len(data) < 5:
                    return None
                h, w = struct.unpack(">HH", data[1:5])
                return int(w), int(h)
        return None


END_WINDOW = 65536  # trailing bytes searched for the end marker (some files carry extras)


def _has_end_marker(path: str, png: bool) -> bool:
    """False when the file was cut short (a valid header alone does not show that): a
    PNG without an IEND chunk in its last 64 KiB, or a JPEG without an EOI marker
    (FF D9) after the start of its image data (the first SOS segment) in its last
    64 KiB. An EOI before the scan, such as the end of an EXIF thumbnail inside the
    APP1 segment of a camera photo, does not count. Other formats are not checked."""
    with open(path, "rb") as f:
        head = f.read(3)
        if not (png or head.startswith(JPEG_MAGIC)):
            return True
        scan = 0
        if not png:
            scan = next((offset for marker, offset in _jpeg_segments(f) if marker == 0xDA),
                        None)
            if scan is None:
                return False
        f.seek(0, os.SEEK_END)
        size = f.tell()
        start = max(0, size - END_WINDOW)
        f.seek(start)
        tail = f.read()
    if png:
        return b"IEND" in tail
    return start + tail.rfind(b"\xff\xd9") > scan if b"\xff\xd9" in tail else False


def check_image(path: str, verify: str = "header") -> tuple | None:
    """Checks one image file; returns its (width, height) when known.

    Raises ValueError with the reason when the file is missing, empty, not a recognised
    image format or (with `verify="decode"`) does not decode.
    """
    if not os.path.isfile(path):
        raise ValueError("file not found")
    if os.path.getsize(path) == 0:
        raise ValueError("file is empty")
    if verify == "exists":
        return None
    with open(path, "rb") as f:
        head = f.read(8)
    if not (head.startswith(JPEG_MAGIC) or head.startswith(PNG_MAGIC)
            or any(head.startswith(m) for m in _OTHER_MAGIC)):
        raise ValueError(f"not a JPEG, PNG, GIF or BMP file (starts with {head[:4]!r})")
    size = image_header_size(path)
    if head.startswith((JPEG_MAGIC, PNG_MAGIC)) and size is None:
        raise ValueError("truncated or corrupt image header")
    if not _has_end_marker(path, png=head.startswith(PNG_MAGIC)):
        raise ValueError("truncated image: no end marker near the end of the file (a JPEG's "
                         "EOI after its image data, a PNG's IEND)")
    if verify == "decode":
        import cv2  # local: only needed for full verification

        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError("OpenCV could not decode the image")
        size = (int(image.shape[1]), int(image.shape[0]))
    return size


# Boxes may reach this many pixels outside their image (the x + w convention of some
# published metadata) and are then clipped silently; farther is an error unless clip_boxes.
BOX_TOLERANCE = 2


def read_split(root: str, split: str, num_classes: int | None = None, verify: str = "header",
               skip_corrupt: bool = False, clip_boxes: bool = False) -> WsolSplit:
    """Reads and validates ROOT/metadata/<split>.

    Args:
      root: dataset root folder (holding `images/` and `metadata/`).
      split: split folder name under ROOT/metadata.
      num_classes: labels must lie in [0, num_classes); None uses class_names.txt when
        present, else only checks labels are >= 0.
      verify: "header" (exists, non-empty, recognised format, readable header: cheap
        enough for ILSVRC), "decode" (also decodes every image with OpenCV), "exists"
        (existence and non-empty only) or "none" (no image file access: for folders used
        only for their boxes, e.g. ILSVRC boxes beside TFDS imagenet2012 images).
      skip_corrupt: skip missing or corrupt images (counted in one log line) instead of
        raising.
      clip_boxes: clip boxes that reach more than `BOX_TOLERANCE` pixels outside their
        image, with a warning naming each line, instead of raising.

    Returns:
      a WsolSplit. Boxes that reach at most `BOX_TOLERANCE` pixels outside the image are
      clipped (counted in `num_clipped`, logged once).

    Raises:
      MetadataError naming the file and line of the first problem found.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"`verify` must be one of {VERIFY_MODES}; received {verify!r}.")
    root = os.path.abspath(os.fspath(root))
    splits = list_splits(root)
    if split not in splits:
        raise MetadataError(
            f"WSOL metadata folder {root!r} has no split {split!r} (a folder "
            f"metadata/{split}/ with image_ids.txt); available splits: {list(splits)}.")
    meta = os.path.join(root, "metadata", split)
    if num_classes is None:
        names = read_class_names(root)
        num_classes = len(names) if names else None

    # image_ids.txt
    ids_path = os.path.join(meta, "image_ids.txt")
    ids, id_line = [], {}
    for n, fields in read_lines(ids_path):
        image_id = fields[0]
        if len(fields) != 1:
            raise MetadataError(
                f"{ids_path}:{n}: expected one field '<relpath>', received {len(fields)}.")
        if image_id in id_line:
            raise MetadataError(f"{ids_path}:{n}: image id {image_id!r} repeats line "
                                f"{id_line[image_id]}.")
        id_line[image_id] = n
        ids.append(image_id)
    if not ids:
        raise MetadataError(f"{ids_path}: the split {split!r} is empty (no image ids).")

    # class_labels.txt
    labels_path = os.path.join(meta, "class_labels.txt")
    labels = {}
    for n, fields in read_lines(labels_path):
        if len(fields) != 2:
            raise MetadataError(f"{labels_path}:{n}: expected '<relpath>,<label>', "
                                f"received {','.join(fields)!r}.")
        image_id, value = fields
        if image_id not in id_line:
            raise MetadataError(f"{labels_path}:{n}: image id {image_id!r} is not in "
                                f"{ids_path}.")
        label = parse_int(value, labels_path, n, "class label")
        if label < 0 or (num_classes is not None and label >= num_classes):
            expected = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise MetadataError(f"{labels_path}:{n}: label {label} of {image_id!r} is out of "
                                f"range; expected {expected}.")
        labels[image_id] = label
    for image_id in ids:
        if image_id not in labels:
            raise MetadataError(f"{ids_path}:{id_line[image_id]}: image id {image_id!r} has "
                                f"no line in {labels_path}.")

    # image_sizes.txt (optional)
    sizes_path = os.path.join(meta, "image_sizes.txt")
    sizes, size_line = {}, {}
    for n, fields in read_lines(sizes_path, required=False):
        if len(fields) != 3:
            raise MetadataError(f"{sizes_path}:{n}: expected '<relpath>,<w>,<h>', "
                                f"received {','.join(fields)!r}.")
        if fields[0] not in id_line:
            raise MetadataError(f"{sizes_path}:{n}: image id {fields[0]!r} is not in "
                                f"{ids_path}.")
        w = parse_int(fields[1], sizes_path, n, "width")
        h = parse_int(fields[2], sizes_path, n, "height")
        if w <= 0 or h <= 0:
            raise MetadataError(f"{sizes_path}:{n}: expected a positive size, received "
                                f"{w}x{h}.")
        sizes[fields[0]] = (w, h)
        size_line[fields[0]] = n

    # images: existence, format, header size.
    bad = []
    for image_id in ids if verify != "none" else ():
        path = os.path.join(root, "images", image_id)
        try:
            size = check_image(path, verify)
        except ValueError as e:
            if not skip_corrupt:
                raise MetadataError(
                    f"{ids_path}:{id_line[image_id]}: image {path!r} is unusable: {e}. "
                    "Fix or remove it, or skip such images (--skip_corrupt, or skip_corrupt=True)."
                ) from None
            bad.append(image_id)
            continue
        if size is not None:
            if image_id in sizes and sizes[image_id] != size:
                raise MetadataError(
                    f"{sizes_path}:{size_line[image_id]}: size of {image_id!r} is given as "
                    f"{sizes[image_id][0]}x{sizes[image_id][1]} (w x h) but the image file is "
                    f"{size[0]}x{size[1]}.")
            sizes[image_id] = size
    if bad:
        logger.warning("%s: skipped %d missing or corrupt image(s) of split %r (first: %r).",
                       root, len(bad), split, bad[0])
        bad_set = set(bad)
        ids = [i for i in ids if i not in bad_set]
        if not ids:
            raise MetadataError(f"{ids_path}: every image of split {split!r} is missing or "
                                "corrupt; the split is empty.")

    # localization.txt: boxes or masks.
    loc_path = os.path.join(meta, "localization.txt")
    boxes = {i: [] for i in ids}
    masks = {i: [] for i in ids}
    ignores = {i: "" for i in ids}
    kind = None
    num_clipped = 0
    for n, fields in read_lines(loc_path):
        image_id = fields[0]
        if image_id not in id_line:
            raise MetadataError(f"{loc_path}:{n}: image id {image_id!r} is not in {ids_path}.")
        line_kind = {5: "box", 3: "mask", 2: "mask"}.get(len(fields))
        if line_kind is None:
            raise MetadataError(f"{loc_path}:{n}: expected '<relpath>,x0,y0,x1,y1' or "
                                f"'<relpath>,<mask>,<ignore>', received {','.join(fields)!r}.")
        if kind is None:
            kind = line_kind
        elif kind != line_kind:
            raise MetadataError(f"{loc_path}:{n}: mixes {line_kind} lines with {kind} lines.")
        if image_id not in boxes:  # a skipped corrupt image
            continue
        if kind == "box":
            x0, y0, x1, y1 = (parse_int(v, loc_path, n, "box coordinate") for v in fields[1:])
            if x1 < x0 or y1 < y0:
                raise MetadataError(f"{loc_path}:{n}: box ({x0}, {y0}, {x1}, {y1}) of "
                                    f"{image_id!r} has x1 < x0 or y1 < y0; expected inclusive "
                                    "corners x0 <= x1, y0 <= y1.")
            if image_id in sizes:
                w, h = sizes[image_id]
                clipped = (min(max(x0, 0), w - 1), min(max(y0, 0), h - 1),
                           min(max(x1, 0), w - 1), min(max(y1, 0), h - 1))
                if clipped != (x0, y0, x1, y1):
                    beyond = max(-x0, -y0, x1 - (w - 1), y1 - (h - 1))
                    if beyond > BOX_TOLERANCE:
                        where = (f"{loc_path}:{n}: box ({x0}, {y0}, {x1}, {y1}) of "
                                 f"{image_id!r} reaches {beyond} px outside its {w}x{h} image")
                        if not clip_boxes:
                            raise MetadataError(
                                f"{where}; expected boxes inside the image (up to "
                                f"{BOX_TOLERANCE} px outside is clipped), or pass clip_boxes "
                                "to clip it.")
                        logger.warning("%s; clipped to %s.", where, clipped)
                    num_clipped += 1
                    x0, y0, x1, y1 = clipped
            boxes[image_id].append((x0, y0, x1, y1))
        else:
            mask_path = _resolve_mask(root, fields[1], loc_path, n)
            masks[image_id].append(mask_path)
            ignore = fields[2] if len(fields) == 3 else ""
            if ignore:
                ignores[image_id] = _resolve_mask(root, ignore, loc_path, n)
    if num_clipped:
        logger.warning("%s: clipped %d box(es) of split %r that reached outside their image.",
                       loc_path, num_clipped, split)
    if kind == "mask":
        for image_id in ids:
            if not masks[image_id]:
                raise MetadataError(f"{loc_path}: image id {image_id!r} (line "
                                    f"{id_line[image_id]} of {ids_path}) has no mask line.")

    counts = [len(boxes[i]) for i in ids]
    values = [b for i in ids for b in boxes[i]]
    return WsolSplit(
        root=root,
        split=split,
        image_ids=tuple(ids),
        labels=np.array([labels[i] for i in ids], np.int32),
        sizes=(np.array([sizes[i] for i in ids], np.int32)
               if all(i in sizes for i in ids) else None),
        box_values=np.array(values, np.float32).reshape(-1, 4),
        box_row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        mask_paths=tuple(tuple(masks[i]) for i in ids) if kind == "mask" else None,
        ignore_paths=tuple(ignores[i] for i in ids) if kind == "mask" else None,
        num_clipped=num_clipped,
        num_skipped=len(bad),
        skipped_ids=tuple(bad),
        unlocalized=tuple((i, id_line[i]) for i in ids if not (boxes[i] or masks[i])),
    )


def _resolve_mask(root: str, rel: str, loc_path: str, line: int) -> str:
    for candidate in (os.path.join(root, rel), os.path.join(root, "masks", rel)):
        if os.path.isfile(candidate):
            return candidate
    raise MetadataError(f"{loc_path}:{line}: mask file {rel!r} not found under {root!r} or "
                        f"{os.path.join(root, 'masks')!r}.")
