"""In-memory temporal data: videos of per-frame features, video labels, segments in seconds.

Every temporal source (the built-in synthetic data, a feature folder) produces a
`TemporalSource`: class names, the feature size and, per split, a list of `Video`s.
`make_dataset` turns a list of videos into a `tf.data.Dataset` of batches padded to
their longest video, `({"features": [B, T, D], "mask": [B, T]}, labels [B, K])`;
`pad_batch` does the same
in NumPy for evaluation.

Time convention: feature `i` of a video covers `[i / rate, (i + 1) / rate)` seconds,
where `rate` is the video's `feature_rate` (features per second).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

__all__ = ["Video", "TemporalSource", "make_dataset", "pad_batch", "mean_feature",
           "multi_hot"]


@dataclasses.dataclass(frozen=True)
class Video:
    """One video.

    Args:
      video_id: unique name.
      features: `[T, D]` float32 per-frame features (T >= 1).
      labels: sorted class indices present in the video (video-level labels).
      segments: ground-truth action instances `(class_index, t_start, t_end)` in seconds.
      feature_rate: features per second.
    """

    video_id: str
    features: np.ndarray
    labels: tuple
    segments: tuple
    feature_rate: float

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.feature_rate


@dataclasses.dataclass(frozen=True)
class TemporalSource:
    """A temporal dataset held in memory.

    Args:
      name: a short description (`synthetic:<config>` or the folder path).
      class_names: K names, indexed by class.
      feature_dim: D.
      splits: split name -> list of `Video`.
    """

    name: str
    class_names: tuple
    feature_dim: int
    splits: dict

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> list:
        if name not in self.splits:
            raise ValueError(f"split: expected one of {sorted(self.splits)} of source "
                             f"{self.name!r}, received {name!r}")
        return self.splits[name]

    def ground_truth(self, split: str) -> list:
        """`(video_id, class_name, t_start, t_end)` of every instance of the split."""
        return [(v.video_id, self.class_names[c], s, e)
                for v in self.split(split) for c, s, e in v.segments]


def multi_hot(labels, num_classes: int) -> np.ndarray:
    out = np.zeros([num_classes], np.float32)
    out[list(labels)] = 1.0
    return out


def mean_feature(videos) -> np.ndarray:
    """The mean feature over all frames of `videos`, `[D]` float32 (the hiding fill)."""
    total = None
    count = 0
    for v in videos:
        s = v.features.astype(np.float64).sum(axis=0)
        total = s if total is None else total + s
        count += v.num_frames
    if not count:
        raise ValueError("mean_feature: no frames")
    return (total / count).astype(np.float32)


def pad_batch(videos, num_classes: int, length: int | None = None):
    """Pads videos to a common length: `(features [B, T, D], mask [B, T], labels [B, K])`."""
    length = length or max(v.num_frames for v in videos)
    dim = videos[0].features.shape[1]
    feats = np.zeros([len(videos), length, dim], np.float32)
    mask = np.zeros([len(videos), length], np.float32)
    labels = np.zeros([len(videos), num_classes], np.float32)
    for i, v in enumerate(videos):
        t = min(v.num_frames, length)
        feats[i, :t] = v.features[:t]
        mask[i, :t] = 1.0
        labels[i] = multi_hot(v.labels, num_classes)
    return feats, mask, labels


def make_dataset(videos, num_classes: int, batch_size: int, shuffle: bool = False,
                 seed: int = 0, drop_remainder: bool = False, hiding=None):
    """Padded batches `({"features", "mask"}, labels)` of `videos`.

    With `hiding` (a dict of `segment_lengths`, `hide_prob`, `fill_value`), every batch
    goes through `keras_has.temporal.hide_segments` with its mask (padding untouched)
    in the input pipeline, as the image side hides in `keras_has.data`: each batch
    gets a stateless seed from `tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)`, so runs repeat exactly and every epoch draws
    fresh segments, and the work overlaps the training step instead of adding to it.

    Args:
      videos: list of `Video`.
      num_classes: K (labels are multi-hot `[B, K]`).
      batch_size: batch size.
      shuffle: reshuffle every epoch (order follows `seed`).
      seed: shuffle seed.
      drop_remainder: drop the last partial batch.
    """
    if not videos:
        raise ValueError("make_dataset: no videos")
    dim = int(videos[0].features.shape[1])

    def generate():
        for v in videos:
            yield (v.features.astype(np.float32), np.ones([v.num_frames], np.float32),
                   multi_hot(v.labels, num_classes))

    ds = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.float32),
        tf.TensorSpec([num_classes], tf.float32)))
    # A known length lets Keras count the steps of an epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(videos))).cache()
    if shuffle:
        ds = ds.shuffle(len(videos), seed=seed, reshuffle_each_iteration=True)
    # Each batch is padded to its own longest video (long THUMOS14 videos do not inflate
    # every batch); the time axis is dynamic, so the step is traced once.
    ds = ds.padded_batch(batch_size, padded_shapes=([None, dim], [None], [num_classes]),
                         drop_remainder=drop_remainder)
    if hiding:
        from keras_has.temporal.hiding import hide_segments

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
            2, drop_remainder=True)

        def hide(batch, pair):
            f, m, y = batch
            f = hide_segments(f, hiding["segment_lengths"], hiding["hide_prob"],
                              hiding.get("fill_value", 0.0), seed=pair, mask=m)
            return {"features": f, "mask": m}, y

        # One sequential map: its work is small, and extra threads only add overhead.
        ds = tf.data.Dataset.zip((ds, seeds)).map(hide)
    else:
        ds = ds.map(lambda f, m, y: ({"features": f, "mask": m}, y))
    return ds.prefetch(tf.data.AUTOTUNE)
