"""The TFDS builder of the synthetic temporal data equals the in-memory generator."""
import numpy as np

from keras_has.temporal.synthetic import make_synthetic_source
from keras_has.temporal.tfds_builder import load_tfds_source


def test_tfds_tiny_equals_in_memory(tmp_path):
    from_tfds = load_tfds_source("tiny", data_dir=str(tmp_path))
    direct = make_synthetic_source("tiny", seed=0)
    assert from_tfds.class_names == direct.class_names
    assert sorted(from_tfds.splits) == sorted(direct.splits)
    for split, videos in direct.splits.items():
        got = from_tfds.splits[split]
        assert [v.video_id for v in got] == [v.video_id for v in videos]
        for a, b in zip(got, videos):
            np.testing.assert_array_equal(a.features, b.features)
            assert a.labels == b.labels and a.feature_rate == b.feature_rate
            assert a.segments == b.segments
    # Prepared once: a second load reads the cache.
    again = load_tfds_source("tiny", data_dir=str(tmp_path))
    np.testing.assert_array_equal(again.splits["test"][0].features,
                                  direct.splits["test"][0].features)
