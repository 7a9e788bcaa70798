"""The built-in synthetic temporal dataset: per-frame features of videos with actions.

Generated in memory with NumPy, deterministically from a seed (same seed, same bytes).
Each video is a sequence of `T` feature vectors (`D` dims, `feature_rate` per second)
holding one to `max_instances` instances of one action class on background frames.

- Background frames: Gaussian noise, plus (with probability `distractor_rate` per
  stretch) short stretches of a random class's *body* pattern at body strength: the
  body evidence is real but not unique to action instances.
- An instance of class `c` lasts `instance_frames` frames (drawn per instance). Its
  *moment* (`moment_frames` frames at a random place inside it) adds the class's moment
  direction at strength `moment_strength`: short, strong and always decisive. The rest,
  its *body*, adds a body direction at the weaker `body_strength`: the class's own in a
  fraction `body_own_prob` of instances, another class's otherwise.
- Ground truth: the whole instance (moment and body), in seconds.

Why it is a fair test of the paper's claim (Section 4.2): a plain classifier reaches
~100% from the moment alone and has no reason to use the longer, noisier body, so its
temporal CAM covers a fraction of each instance; the body is learnable (it is the
class's own pattern in most instances) when the moment is hidden. Nothing favours
hiding at test time: the moment is always present there.

The class directions are orthonormal (D >= 2K) and are drawn from `world_seed`, fixed
for all splits; each split's videos come from their own seed.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from keras_has.temporal.data import TemporalSource, Video

__all__ = ["SyntheticTemporalConfig", "CONFIGS", "make_synthetic_source", "generate_videos",
           "class_directions"]


@dataclasses.dataclass(frozen=True)
class SyntheticTemporalConfig:
    """Parameters of the synthetic temporal data (all lengths in frames).

    Args:
      num_classes: K classes (named `action_<k>`).
      feature_dim: D >= 2K.
      min_frames, max_frames: range of video lengths T (inclusive).
      feature_rate: features per second.
      max_instances: 1..max_instances instances of the video's class.
      instance_frames: (min, max) instance length.
      moment_frames: (min, max) length of the discriminative moment.
      moment_strength, body_strength, noise: signal amplitudes and noise std.
      body_own_prob: probability that an instance's body wears its own class's pattern.
      distractor_rate: expected body-pattern stretches of random classes in background.
      splits: split name -> (number of videos, seed offset).
      world_seed: seed of the class directions.
    """

    num_classes: int = 6
    feature_dim: int = 32
    min_frames: int = 96
    max_frames: int = 128
    feature_rate: float = 2.0
    max_instances: int = 2
    instance_frames: tuple = (24, 40)
    moment_frames: tuple = (2, 3)
    moment_strength: float = 1.5
    body_strength: float = 0.7
    noise: float = 0.3
    body_own_prob: float = 1.0
    distractor_rate: float = 0.0
    body_random_sign: bool = True
    splits: tuple = (("train", 600, 0), ("validation", 100, 1), ("test", 200, 2))
    world_seed: int = 1234


CONFIGS = {
    "default": SyntheticTemporalConfig(),
    "tiny": SyntheticTemporalConfig(num_classes=3, feature_dim=8, min_frames=24, max_frames=32,
                                    instance_frames=(6, 10), moment_frames=(1, 2),
                                    splits=(("train", 24, 0), ("validation", 8, 1),
                                            ("test", 12, 2))),
}


def class_directions(config):
    """`(moment, body)` directions `[num_classes, feature_dim]` of `config`'s classes:
    orthonormal rows drawn from `config.world_seed`."""
    rng = np.random.default_rng(config.world_seed)
    q, _ = np.linalg.qr(rng.standard_normal([config.feature_dim, config.feature_dim]))
    k = config.num_classes
    return q[:, :k].T.astype(np.float32), q[:, k:2 * k].T.astype(np.float32)


def _body_signs(rng, config, n):
    if not config.body_random_sign:
        return np.ones([n], np.float32)
    return rng.choice(np.array([-1.0, 1.0], np.float32), size=n)


def _place(rng, total, lengths):
    """Random non-overlapping starts for runs of `lengths` in `[0, total)`, or None."""
    free = total - sum(lengths)
    if free < len(lengths) + 1:
        return None
    # Split the free frames into len+1 gaps, each >= 1.
    cuts = np.sort(rng.choice(np.arange(1, free), size=len(lengths), replace=False))
    gaps = np.diff(np.concatenate([[0], cuts]))
    starts, pos = [], 0
    for gap, n in zip(gaps, lengths):
        pos += int(gap)
        starts.append(pos)
        pos += n
    return starts


def generate_videos(config: SyntheticTemporalConfig, count: int, seed: int, prefix: str):
    """`count` videos of `config`, deterministic from `seed`."""
    moment_dirs, body_dirs = class_directions(config)
    k = config.num_classes
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(count):
        t = int(rng.integers(config.min_frames, config.max_frames + 1))
        cls = int(rng.integers(k))
        x = rng.standard_normal([t, config.feature_dim]).astype(np.float32) * config.noise
        n_inst = int(rng.integers(1, config.max_instances + 1))
        lo, hi = config.instance_frames
        lengths = [int(rng.integers(lo, hi + 1)) for _ in range(n_inst)]
        starts = _place(rng, t, lengths)
        while starts is None:  # too many instances for a short video: drop one
            lengths = lengths[:-1]
            starts = _place(rng, t, lengths)
        occupied = np.zeros([t], bool)
        segments = []
        for start, n in zip(starts, lengths):
            m = int(rng.integers(config.moment_frames[0], config.moment_frames[1] + 1))
            m_start = start + int(rng.integers(0, n - m + 1))
            own = rng.random() < config.body_own_prob
            body_cls = cls if own else int((cls + rng.integers(1, k)) % k) if k > 1 else cls
            body = config.body_strength * _body_signs(rng, config, n)[:, None] * body_dirs[body_cls]
            body[m_start - start:m_start - start + m] = config.moment_strength * moment_dirs[cls]
            x[start:start + n] += body
            occupied[start:start + n] = True
            segments.append((cls, start / config.feature_rate, (start + n) / config.feature_rate))
        # Distractors: body patterns of random classes on background frames.
        n_dis = int(rng.poisson(config.distractor_rate))
        for _ in range(n_dis):
            n = int(rng.integers(lo // 2, hi // 2 + 1))
            s = int(rng.integers(0, max(t - n, 1)))
            span = np.arange(s, min(s + n, t))
            span = span[~occupied[span]]
            x[span] += (config.body_strength * _body_signs(rng, config, len(span))[:, None]
                        * body_dirs[int(rng.integers(k))])
        videos.append(Video(video_id=f"{prefix}_{i:05d}", features=x, labels=(cls,),
                            segments=tuple(sorted(segments, key=lambda s: s[1])),
                            feature_rate=config.feature_rate))
    return videos


def make_synthetic_source(config="default", seed: int = 0) -> TemporalSource:
    """The built-in temporal dataset (`config`: a name of `CONFIGS` or a config object).

    `seed` shifts every split's seed (seed 0 is the reference data); the class
    directions stay fixed.
    """
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"source_config: expected one of {sorted(CONFIGS)} for the "
                             f"synthetic temporal data, received {config!r}")
        name, config = config, CONFIGS[config]
    else:
        name = "custom"
    if config.feature_dim < 2 * config.num_classes:
        raise ValueError(f"feature_dim: expected >= 2 * num_classes = {2 * config.num_classes}, "
                         f"received {config.feature_dim}")
    splits = {split: generate_videos(config, n, 1000 * seed + 17 * offset + 1, split)
              for split, n, offset in config.splits}
    return TemporalSource(name=f"synthetic:{name}",
                          class_names=tuple(f"action_{c}" for c in range(config.num_classes)),
                          feature_dim=config.feature_dim, splits=splits)
