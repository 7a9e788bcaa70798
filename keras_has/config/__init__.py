"""Configuration: frozen dataclasses, validated once at construction.

The bottom layer of the package: it imports nothing else of keras_has and no
TensorFlow, so a config can be built, checked, saved and read anywhere. Checks that need
the product's registries (is this model, method or dataset name known?) run where
those registries live, before any work: `keras_has.train.checks`.

- `train`: `TrainConfig` and its groups (`DataConfig`, `HidingConfig`, `OptimConfig`,
  `MethodConfig`), what one training run needs.
- `experiments`: `ComparisonConfig`, `BenchmarkConfig`, `TuneConfig` (arms x seeds,
  searches).
- `commands`: `TrainOptions`, `EvaluateConfig`, `ExportConfig`, `PredictConfig`.
- `temporal`: `TemporalConfig`, `TemporalComparisonConfig`.
- `hiding_args`: the grid-size and hide-probability check shared with the hiding op.
- `checks`: the value checks and the JSON round trip.
"""
from keras_has.config.checks import config_from_dict, config_to_dict, looks_like_path
from keras_has.config.experiments import BenchmarkConfig, ComparisonConfig, TuneConfig
from keras_has.config.train import (LR_SCHEDULES, MIXED_PRECISION_POLICIES, OPTIMIZERS,
                                    PREPROCESSING_MODES, STRATEGIES, DataConfig, HidingConfig,
                                    MethodConfig, OptimConfig, TrainConfig, source_kwargs)

__all__ = ["DataConfig", "HidingConfig", "OptimConfig", "MethodConfig", "TrainConfig",
           "ComparisonConfig", "BenchmarkConfig", "TuneConfig", "STRATEGIES", "MIXED_PRECISION_POLICIES",
           "OPTIMIZERS", "LR_SCHEDULES", "PREPROCESSING_MODES", "looks_like_path",
           "config_to_dict", "config_from_dict", "source_kwargs"]
