"""Configuration of temporal training and evaluation: a frozen dataclass, validated once.

Scripts build a `TemporalConfig` from absl flags; library code never reads flags.
Construction checks every value (and that a feature folder exists) before any work is
done and writes nothing. `to_dict()` / `from_dict()` round-trip through JSON.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

from keras_has.config.checks import config_from_dict, config_to_dict, looks_like_path
from keras_has.config.checks import fail as _fail
from keras_has.config.train import MIXED_PRECISION_POLICIES, STRATEGIES

__all__ = ["TemporalConfig", "TemporalComparisonConfig", "DEFAULT_TIOUS"]

DEFAULT_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5)
HIDE_IN = ("data", "model")
CONFIG_VERSION = 1


def _int_at_least(flag, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(flag, value, f"an integer >= {low}")


def _number_in(flag, value, low, high, low_open=False, what=None):
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value > low if low_open else value >= low)
          and value <= high)
    if not ok:
        bracket = "(" if low_open else "["
        _fail(flag, value, what or f"a number in {bracket}{low}, {high}]")


@dataclasses.dataclass(frozen=True)
class TemporalConfig:
    """Everything `keras_has.temporal.training.train_temporal` needs.

    Args:
      output_dir: run folder (config, backup for resume, log, final model, metrics).
      source: `synthetic` (built in) or the path of a feature folder
        (`keras_has.temporal.features`).
      source_config: synthetic config name (`default`, `tiny`); unused for folders.
      data_seed: seed of the synthetic data (0 = the reference data).
      train_split, eval_split: split names (`eval_split` empty: no evaluation).
      batch_size: global batch size.
      epochs: training epochs.
      learning_rate: Adam learning rate.
      weight_decay: Adam's decoupled weight decay (0 = none).
      hidden, num_layers, kernel_size, dropout: the temporal GAP model
        (`keras_has.temporal.model.build_temporal_gap`).
      segment_lengths: hiding segment lengths in frames (empty or only zeros: baseline).
      hide_prob: probability of hiding each segment.
      hide_in: `data` (hiding in the input pipeline, overlapping the training step; the
        saved model has no hiding layer) or `model` (a `TemporalHideAndSeek` first
        layer, identity at inference).
      cam_threshold: fraction of the min-max normalised CAM that makes a frame
        foreground (`keras_has.temporal.segments`).
      class_threshold: a class is predicted present in a video when its probability is
        >= this (the top class always is).
      tiou_thresholds: tIoU thresholds of the detection mAP, each in (0, 1].
      strategy: `mirrored`, `multi_worker`, `tpu` or `one_device` (as for images).
      mixed_precision: `none`, `auto`, `mixed_bfloat16` or `mixed_float16`.
      seed: seeds initialisation, data order and hiding.
      verbose: Keras fit verbosity (0, 1, 2).
    """

    output_dir: str
    source: str = "synthetic"
    source_config: str = "default"
    data_seed: int = 0
    train_split: str = "train"
    eval_split: str | None = "test"
    batch_size: int = 32
    epochs: int = 50
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    hidden: int = 64
    num_layers: int = 2
    kernel_size: int = 3
    dropout: float = 0.0
    segment_lengths: tuple[int, ...] = ()
    hide_prob: float = 0.5
    hide_in: str = "data"
    cam_threshold: float = 0.2
    class_threshold: float = 0.1
    tiou_thresholds: tuple[float, ...] = DEFAULT_TIOUS
    strategy: str = "one_device"
    mixed_precision: str = "none"
    seed: int = 0
    verbose: int = 0

    def __post_init__(self):
        if not isinstance(self.output_dir, str) or not self.output_dir:
            _fail("output_dir", self.output_dir, "a directory path")
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            _fail("output_dir", self.output_dir, "a directory (a file exists there)")
        if not isinstance(self.source, str) or not self.source:
            _fail("source", self.source, "'synthetic' or a feature folder path")
        if looks_like_path(self.source):
            if not os.path.isdir(os.path.expanduser(self.source)):
                _fail("source", self.source, "an existing feature folder (not found)")
        elif self.source != "synthetic":
            _fail("source", self.source, "'synthetic' or the path of a feature folder")
        elif not isinstance(self.source_config, str) or not self.source_config:
            _fail("source_config", self.source_config, "a synthetic configuration name")
        _int_at_least("data_seed", self.data_seed, 0)
        if not isinstance(self.train_split, str) or not self.train_split:
            _fail("train_split", self.train_split, "a split name")
        if self.eval_split == "":
            object.__setattr__(self, "eval_split", None)
        if self.eval_split is not None and not isinstance(self.eval_split, str):
            _fail("eval_split", self.eval_split, "a split name or empty")
        for flag, low in (("batch_size", 1), ("epochs", 1), ("hidden", 1), ("num_layers", 0),
                          ("kernel_size", 1), ("seed", 0)):
            _int_at_least(flag, getattr(self, flag), low)
        if self.kernel_size % 2 == 0:
            _fail("kernel_size", self.kernel_size, "an odd number")
        _number_in("learning_rate", self.learning_rate, 0, 10, low_open=True,
                   what="a positive number")
        _number_in("weight_decay", self.weight_decay, 0, 1)
        _number_in("dropout", self.dropout, 0, 0.99)
        lengths = self.segment_lengths
        if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__iter__"):
            _fail("segment_lengths", lengths, "a list of integers (frames)")
        lengths = tuple(lengths)
        for n in lengths:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                _fail("segment_lengths", list(lengths), "non-negative integers (frames)")
        if len(set(lengths)) != len(lengths):
            _fail("segment_lengths", list(lengths), "no repeated lengths")
        object.__setattr__(self, "segment_lengths", lengths)
        _number_in("hide_prob", self.hide_prob, 0, 1)
        if self.hide_in not in HIDE_IN:
            _fail("hide_in", self.hide_in, f"one of {list(HIDE_IN)}")
        _number_in("cam_threshold", self.cam_threshold, 0, 1)
        _number_in("class_threshold", self.class_threshold, 0, 1)
        tious = tuple(self.tiou_thresholds)
        if not tious:
            _fail("tiou_thresholds", list(tious), "at least one threshold in (0, 1]")
        for t in tious:
            _number_in("tiou_thresholds", t, 0, 1, low_open=True,
                       what=f"numbers in (0, 1] (got {t!r} in {list(tious)})")
        object.__setattr__(self, "tiou_thresholds", tuple(float(t) for t in tious))
        if self.strategy not in STRATEGIES:
            _fail("strategy", self.strategy, f"one of {list(STRATEGIES)}")
        if self.mixed_precision in ("", None):
            object.__setattr__(self, "mixed_precision", "none")
        if self.mixed_precision not in MIXED_PRECISION_POLICIES:
            _fail("mixed_precision", self.mixed_precision,
                  f"one of {list(MIXED_PRECISION_POLICIES)}")
        if self.verbose not in (0, 1, 2):
            _fail("verbose", self.verbose, "0, 1 or 2")

    @property
    def hiding_enabled(self) -> bool:
        return any(n > 0 for n in self.segment_lengths) and self.hide_prob > 0

    def to_dict(self) -> dict:
        """A JSON-serialisable dict with a `version` key."""
        return config_to_dict(self, CONFIG_VERSION)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TemporalConfig":
        """Inverse of `to_dict`; validates like the constructor. Unknown keys fail."""
        return config_from_dict(cls, values, CONFIG_VERSION)


@dataclasses.dataclass(frozen=True)
class TemporalComparisonConfig:
    """How `keras_has.temporal.comparison.run_temporal_comparison` runs its two arms.

    Args:
      seeds: one baseline + Hide-and-Seek pair per seed (distinct integers >= 0).
      figure_videos: evaluation videos drawn in timeline.png (0: none).
    """

    seeds: tuple[int, ...] = (0,)
    figure_videos: int = 4

    def __post_init__(self):
        seeds = self.seeds
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
            _fail("seeds", seeds, "a list of integers >= 0")
        seeds = tuple(seeds)
        if not seeds:
            _fail("seeds", list(seeds), "at least one seed")
        for seed in seeds:
            _int_at_least("seeds", seed, 0)
        if len(set(seeds)) != len(seeds):
            _fail("seeds", list(seeds), "no repeated seeds")
        object.__setattr__(self, "seeds", seeds)
        _int_at_least("figure_videos", self.figure_videos, 0)
