"""Temporal Hide-and-Seek: weakly-supervised action localization (Singh & Lee, Section 4.2).

Public API:
    hide_segments, TemporalHideAndSeek        hiding in time (op and Keras layer)
    build_temporal_gap, cam_model             temporal GAP classifier and its CAM
    cam_segments, detect_video                temporal CAM -> action segments
    tiou, detection_map, classification_map   THUMOS14 detection mAP, video-level mAP
    make_synthetic_source, load_feature_folder, convert_thumos14, load_tfds_source   data
    TemporalConfig, train_temporal, evaluate_temporal, run_temporal_comparison
"""
from keras_has.temporal.hiding import hide_segments
from keras_has.temporal.layers import MaskedTemporalAverage, TemporalHideAndSeek
from keras_has.temporal.metrics import classification_map, detection_map, tiou
from keras_has.temporal.model import build_temporal_gap, cam_model
from keras_has.temporal.segments import cam_segments, detect_video

__all__ = [
    "hide_segments", "TemporalHideAndSeek", "MaskedTemporalAverage", "build_temporal_gap",
    "cam_model", "cam_segments", "detect_video", "tiou", "detection_map",
    "classification_map", "make_synthetic_source", "load_feature_folder", "convert_thumos14",
    "load_tfds_source", "TemporalConfig", "train_temporal", "evaluate_temporal",
    "run_temporal_comparison",
]

_LAZY = {
    "make_synthetic_source": "keras_has.temporal.synthetic",
    "load_feature_folder": "keras_has.temporal.features",
    "convert_thumos14": "keras_has.temporal.features",
    "load_tfds_source": "keras_has.temporal.tfds_builder",
    "TemporalConfig": "keras_has.config.temporal",
    "train_temporal": "keras_has.temporal.training",
    "evaluate_temporal": "keras_has.temporal.evaluation",
    "run_temporal_comparison": "keras_has.temporal.comparison",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_has.temporal' has no attribute {name!r}")
