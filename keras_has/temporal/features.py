"""A folder of pre-extracted per-frame features, and a converter from THUMOS14 files.

Layout (every text file UTF-8, one record per line, blank lines and lines starting
with `#` ignored, fields separated by whitespace):

```
ROOT/
  class_names.txt         one class name per line (index = line order)
  videos.txt              <video_id> <subset> <feature_rate> <labels>
                          subset: a split name (THUMOS14: validation, test);
                          feature_rate: features per second (> 0);
                          labels: comma-separated class names, or '-' for none
  annotations.txt         <video_id> <class_name> <t_start> <t_end>   (seconds)
  features/<video_id>.npy [T, D] float features (T >= 1, the same D for all videos)
```

Feature `i` covers `[i / rate, (i + 1) / rate)` seconds. Everything is checked when
the folder is loaded, before any training, and every error names the file and line:
a video listed without features, features of the wrong rank or length, an unknown
class name, an annotation for an unlisted video or a class not among the video's
labels, or one that starts before 0 or ends after the video (its last feature, plus
`tolerance` seconds).

`convert_thumos14` writes `class_names.txt`, `videos.txt` and `annotations.txt` from
THUMOS14's official temporal annotations (`<Class>_val.txt`, `<Class>_test.txt`,
lines `<video_id> <t_start> <t_end>`; `Ambiguous_*` files are skipped).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from keras_has.temporal.data import TemporalSource, Video
from keras_has.util.files import atomic_write_bytes, read_text_lines

__all__ = ["load_feature_folder", "convert_thumos14", "FeatureFolderError"]


class FeatureFolderError(ValueError):
    """A bad file or line in a feature folder (the message names the file and line)."""


def _lines(path):
    """`(line_number, fields)` of the meaningful lines of a text file."""
    if not os.path.isfile(path):
        raise FeatureFolderError(f"{path}: file not found")
    for number, line in enumerate(read_text_lines(path, FeatureFolderError), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text.split()


def _number(text, path, number, what):
    try:
        value = float(text)
    except ValueError:
        raise FeatureFolderError(f"{path}:{number}: {what} must be a number, "
                                 f"received {text!r}") from None
    if not math.isfinite(value):
        raise FeatureFolderError(f"{path}:{number}: {what} must be finite, received {text!r}")
    return value


def _read_classes(root):
    path = os.path.join(root, "class_names.txt")
    names = []
    for number, fields in _lines(path):
        name = " ".join(fields)
        if name in names:
            raise FeatureFolderError(f"{path}:{number}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise FeatureFolderError(f"{path}: no class names")
    return names


def _feature_shape(path, video_id, where):
    if not os.path.isfile(path):
        raise FeatureFolderError(f"{where}: video {video_id!r} has no features file {path}")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise FeatureFolderError(f"{path}: expected a NumPy .npy file (np.save), received a "
                                 f"file that starts with {magic!r}")
    try:
        array = np.load(path, mmap_mode="r")
    except Exception as e:  # corrupt or not a .npy file
        raise FeatureFolderError(f"{path}: cannot read features ({e})") from None
    if array.ndim != 2:
        raise FeatureFolderError(f"{path}: expected features of shape [T, D] (rank 2), "
                                 f"received shape {tuple(array.shape)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise FeatureFolderError(f"{path}: expected T >= 1 frames and D >= 1 features, "
                                 f"received shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.number):
        raise FeatureFolderError(f"{path}: expected numeric features, received {array.dtype}")
    return tuple(array.shape)


def _check_finite(features, path, chunk=4096):
    """Raises FeatureFolderError naming the file and the first frame holding a NaN or an
    infinity (read in chunks of frames, so a memory-mapped file is never loaded whole)."""
    for start in range(0, features.shape[0], chunk):
        finite = np.isfinite(np.asarray(features[start:start + chunk], np.float32)).all(axis=1)
        if not finite.all():
            frame = start + int(np.argmin(finite))
            raise FeatureFolderError(
                f"{path}: expected finite features, received NaN or Inf in frame {frame} "
                f"(row {frame} of the [T, D] array); fix or drop that video")


def load_feature_folder(root, tolerance=None, load=True) -> TemporalSource:
    """Loads and checks a feature folder (layout in the module docstring).

    Args:
      root: the folder.
      tolerance: seconds an annotation may extend past the last feature (default: one
        feature period of the video, `1 / feature_rate`).
      load: read the features into memory (False: memory-mapped, read on use).

    Returns:
      A `TemporalSource` whose splits are the subsets of `videos.txt`.

    Raises:
      FeatureFolderError naming the file and line of the first problem.
    """
    root = os.path.expanduser(os.fspath(root))
    if not os.path.isdir(root):
        raise FeatureFolderError(f"{root}: feature folder not found")
    classes = _read_classes(root)
    index = {name: i for i, name in enumerate(classes)}
    videos_path = os.path.join(root, "videos.txt")
    info = {}
    dim = None
    dim_from = None
    for number, fields in _lines(videos_path):
        where = f"{videos_path}:{number}"
        if len(fields) != 4:
            raise FeatureFolderError(f"{where}: expected '<video_id> <subset> <feature_rate> "
                                     f"<labels>', received {' '.join(fields)!r}")
        video_id, subset, rate_text, label_text = fields
        if video_id in info:
            raise FeatureFolderError(f"{where}: video {video_id!r} is listed twice")
        rate = _number(rate_text, videos_path, number, "feature_rate")
        if rate <= 0:
            raise FeatureFolderError(f"{where}: feature_rate must be > 0, received {rate_text}")
        labels = []
        if label_text != "-":
            for name in label_text.split(","):
                if name not in index:
                    raise FeatureFolderError(f"{where}: unknown class {name!r} (not in "
                                             f"class_names.txt)")
                labels.append(index[name])
        feature_path = os.path.join(root, "features", f"{video_id}.npy")
        shape = _feature_shape(feature_path, video_id, where)
        if dim is None:
            dim, dim_from = shape[1], feature_path
        elif shape[1] != dim:
            raise FeatureFolderError(f"{feature_path}: expected D={dim} features per frame "
                                     f"(as in {dim_from}), received shape {shape}")
        info[video_id] = dict(subset=subset, rate=rate, labels=sorted(set(labels)),
                              frames=shape[0], path=feature_path, segments=[])
    if not info:
        raise FeatureFolderError(f"{videos_path}: no videos")

    ann_path = os.path.join(root, "annotations.txt")
    for number, fields in _lines(ann_path):
        where = f"{ann_path}:{number}"
        if len(fields) != 4:
            raise FeatureFolderError(f"{where}: expected '<video_id> <class_name> <t_start> "
                                     f"<t_end>', received {' '.join(fields)!r}")
        video_id, name = fields[0], fields[1]
        if video_id not in info:
            raise FeatureFolderError(f"{where}: video {video_id!r} is not in videos.txt")
        if name not in index:
            raise FeatureFolderError(f"{where}: unknown class {name!r} (not in class_names.txt)")
        start = _number(fields[2], ann_path, number, "t_start")
        end = _number(fields[3], ann_path, number, "t_end")
        v = info[video_id]
        duration = v["frames"] / v["rate"]
        slack = (1.0 / v["rate"]) if tolerance is None else float(tolerance)
        if not 0 <= start < end:
            raise FeatureFolderError(f"{where}: expected 0 <= t_start < t_end, received "
                                     f"{start} {end}")
        if end > duration + slack:
            raise FeatureFolderError(f"{where}: segment [{start}, {end}] s ends after video "
                                     f"{video_id!r} ({v['frames']} features at {v['rate']}/s "
                                     f"= {duration:.3f} s)")
        if index[name] not in v["labels"]:
            raise FeatureFolderError(f"{where}: class {name!r} is not among the labels of "
                                     f"video {video_id!r} in videos.txt")
        v["segments"].append((index[name], start, min(end, duration)))

    splits = {}
    for video_id, v in info.items():
        features = np.load(v["path"], mmap_mode=None if load else "r")
        if load:
            features = np.asarray(features, np.float32)
        _check_finite(features, v["path"])
        splits.setdefault(v["subset"], []).append(Video(
            video_id=video_id, features=features, labels=tuple(v["labels"]),
            segments=tuple(sorted(v["segments"], key=lambda s: (s[1], s[0]))),
            feature_rate=v["rate"]))
    return TemporalSource(name=root, class_names=tuple(classes), feature_dim=int(dim),
                          splits=splits)


_THUMOS_FILE = re.compile(r"^(?P<cls>.+)_(?P<subset>val|test)\.txt$")
_SUBSETS = {"val": "validation", "test": "test"}


def convert_thumos14(annotation_dir, output_root, feature_rate, subsets=("val", "test")):
    """Writes `class_names.txt`, `videos.txt` and `annotations.txt` under `output_root`
    from THUMOS14's `<Class>_val.txt` / `<Class>_test.txt` files.

    Args:
      annotation_dir: folder holding the official annotation files.
      output_root: the feature folder to write into (features go in
        `output_root/features/<video_id>.npy`, extracted separately).
      feature_rate: features per second of those features (e.g. 25 fps / 16-frame
        C3D stride = 1.5625).
      subsets: which annotation files to read (`val` -> split `validation`,
        `test` -> split `test`).

    Returns:
      `{"classes": n, "videos": n, "annotations": n}`.

    Raises:
      FeatureFolderError naming the file and line of a malformed annotation.
    """
    if not os.path.isdir(annotation_dir):
        raise FeatureFolderError(f"{annotation_dir}: annotation folder not found")
    if not (isinstance(feature_rate, (int, float)) and feature_rate > 0):
        raise FeatureFolderError(f"feature_rate: expected a number > 0, received {feature_rate!r}")
    files = []
    for name in sorted(os.listdir(annotation_dir)):
        match = _THUMOS_FILE.match(name)
        if match and match["subset"] in subsets and not match["cls"].startswith("Ambiguous"):
            files.append((match["cls"], match["subset"], os.path.join(annotation_dir, name)))
    if not files:
        raise FeatureFolderError(f"{annotation_dir}: no <Class>_val.txt / <Class>_test.txt "
                                 f"files found")
    classes = sorted({cls for cls, _, _ in files})
    videos, annotations = {}, []
    for cls, subset, path in files:
        for number, fields in _lines(path):
            if len(fields) != 3:
                raise FeatureFolderError(f"{path}:{number}: expected '<video_id> <t_start> "
                                         f"<t_end>', received {' '.join(fields)!r}")
            start = _number(fields[1], path, number, "t_start")
            end = _number(fields[2], path, number, "t_end")
            if not 0 <= start < end:
                raise FeatureFolderError(f"{path}:{number}: expected 0 <= t_start < t_end, "
                                         f"received {fields[1]} {fields[2]}")
            split = _SUBSETS[subset]
            entry = videos.setdefault(fields[0], {"subset": split, "labels": set()})
            if entry["subset"] != split:
                raise FeatureFolderError(f"{path}:{number}: video {fields[0]!r} appears in "
                                         f"both validation and test files")
            entry["labels"].add(cls)
            annotations.append((fields[0], cls, start, end))
    out = os.path.expanduser(os.fspath(output_root))
    os.makedirs(os.path.join(out, "features"), exist_ok=True)
    atomic_write_bytes(os.path.join(out, "class_names.txt"),
                       ("\n".join(classes) + "\n").encode())
    video_lines = [f"{vid} {v['subset']} {feature_rate:g} {','.join(sorted(v['labels']))}"
                   for vid, v in sorted(videos.items())]
    atomic_write_bytes(os.path.join(out, "videos.txt"), ("\n".join(video_lines) + "\n").encode())
    ann_lines = [f"{vid} {cls} {s:g} {e:g}" for vid, cls, s, e in sorted(annotations)]
    atomic_write_bytes(os.path.join(out, "annotations.txt"),
                       ("\n".join(ann_lines) + "\n").encode())
    return {"classes": len(classes), "videos": len(videos), "annotations": len(annotations)}
