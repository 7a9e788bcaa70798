"""The temporal names that DESIGN.md promises, called as written there."""
import numpy as np
import pytest

import keras_has


def test_design_api_hide_segments_positional():
    x = np.ones([2, 6, 3], np.float32)
    out = keras_has.temporal.hide_segments(x, (3,), 1.0, 0.5, 7)  # x, lengths, p, fill, seed
    np.testing.assert_array_equal(np.asarray(out), 0.5)


def test_design_api_detection_map_positional():
    result = keras_has.temporal.detection_map([("v", "A", 0.0, 2.0, 0.9)],
                                              [("v", "A", 0.0, 4.0)], (0.4, 0.5, 0.6))
    assert result == {0.4: pytest.approx(100.0), 0.5: pytest.approx(100.0), 0.6: 0.0}


def test_lazy_names_resolve():
    t = keras_has.temporal
    for name in t.__all__:
        assert getattr(t, name) is not None
    with pytest.raises(AttributeError):
        t.nonexistent  # noqa: B018
