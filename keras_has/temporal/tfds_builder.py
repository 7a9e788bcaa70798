"""TFDS builder `keras_has_synthetic_temporal`: the built-in temporal data as a dataset.

The same videos as `keras_has.temporal.synthetic.make_synthetic_source(config)` (seed
0), written once by TFDS and read back from its cache; `load_tfds_source` returns them
as a `TemporalSource` (tested equal to the in-memory generator). Training uses the
in-memory generator directly (`source=synthetic`): generating the default config takes
0.4 s, less than reading it back.

Usage:
    from keras_has.temporal.tfds_builder import load_tfds_source
    source = load_tfds_source("default", data_dir="~/tensorflow_datasets")
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from keras_has.temporal.data import TemporalSource, Video
from keras_has.temporal.synthetic import CONFIGS, generate_videos

__all__ = ["KerasHasSyntheticTemporal", "load_tfds_source"]


@dataclasses.dataclass(eq=False)
class TemporalBuilderConfig(tfds.core.BuilderConfig):
    """A config of `keras_has_synthetic_temporal`: the name of a synthetic config."""


class KerasHasSyntheticTemporal(tfds.core.GeneratorBasedBuilder):
    """Synthetic weakly-supervised action localization: feature sequences with actions.

    Features per example: `video_id` string; `features` float32 `[T, D]`; `label`
    ClassLabel (the video's class); `segments` a sequence of `{label, t_start, t_end}`
    (seconds, the whole action instances); `feature_rate` float32 (features per
    second). Generated locally, deterministic.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [TemporalBuilderConfig(name=name, description=f"synthetic config {name}")
                       for name in CONFIGS]
    DEFAULT_CONFIG_NAME = "default"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)  # as keras_has.data.synthetic does

    def _info(self):
        cfg = CONFIGS[self.builder_config.name]
        names = [f"action_{c}" for c in range(cfg.num_classes)]
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "video_id": tfds.features.Text(),
                "features": tfds.features.Tensor(shape=(None, cfg.feature_dim),
                                                 dtype=np.float32),
                "label": tfds.features.ClassLabel(names=names),
                "segments": tfds.features.Sequence({
                    "label": tfds.features.ClassLabel(names=names),
                    "t_start": np.float32, "t_end": np.float32}),
                "feature_rate": np.float32,
            }))

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        cfg = CONFIGS[self.builder_config.name]
        return {split: self._generate_examples(cfg, split, n, offset)
                for split, n, offset in cfg.splits}

    def _generate_examples(self, cfg, split, count, offset):
        # The seed rule of make_synthetic_source(seed=0).
        for v in generate_videos(cfg, count, 17 * offset + 1, split):
            yield v.video_id, {
                "video_id": v.video_id, "features": v.features, "label": v.labels[0],
                "segments": {"label": [s[0] for s in v.segments],
                             "t_start": [s[1] for s in v.segments],
                             "t_end": [s[2] for s in v.segments]},
                "feature_rate": v.feature_rate}


def load_tfds_source(config="default", data_dir=None) -> TemporalSource:
    """Prepares (once) and reads `keras_has_synthetic_temporal/<config>` into memory."""
    if config not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, received {config!r}")
    builder = KerasHasSyntheticTemporal(config=config, data_dir=data_dir)
    builder.download_and_prepare()
    cfg = CONFIGS[config]
    splits = {}
    for split, _, _ in cfg.splits:
        videos = []
        for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
            seg = ex["segments"]
            videos.append(Video(
                video_id=ex["video_id"].decode(), features=ex["features"],
                labels=(int(ex["label"]),),
                segments=tuple((int(c), float(s), float(e))
                               for c, s, e in zip(seg["label"], seg["t_start"], seg["t_end"])),
                feature_rate=float(ex["feature_rate"])))
        splits[split] = sorted(videos, key=lambda v: v.video_id)
    return TemporalSource(name=f"tfds:keras_has_synthetic_temporal/{config}",
                          class_names=tuple(f"action_{c}" for c in range(cfg.num_classes)),
                          feature_dim=cfg.feature_dim, splits=splits)
