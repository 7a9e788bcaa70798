"""hide_segments and TemporalHideAndSeek: exactness per segment, statistics, seeds, masks."""
import numpy as np
import pytest
import tensorflow as tf

from keras_has.temporal import TemporalHideAndSeek, hide_segments
from keras_has.temporal.hiding import segment_keep_mask


def _segments_of(length, frames):
    return [(s, min(s + length, frames)) for s in range(0, frames, length)]


def test_each_segment_is_all_kept_or_all_filled_bit_exact():
    rng = np.random.default_rng(0)
    x = rng.standard_normal([16, 10, 5]).astype(np.float32)
    fill = np.arange(5, dtype=np.float32) + 0.25
    out = hide_segments(x, segment_lengths=(4,), hide_prob=0.5, fill_value=fill, seed=3).numpy()
    hidden = kept = 0
    for b in range(16):
        for s, e in _segments_of(4, 10):  # [0,4) [4,8) [8,10): the last is truncated
            seg = out[b, s:e]
            if np.array_equal(seg, x[b, s:e]):
                kept += 1
            else:
                np.testing.assert_array_equal(seg, np.broadcast_to(fill, seg.shape))
                hidden += 1
    assert hidden > 0 and kept > 0


def test_frames_rank5_uint8_whole_frames_and_per_channel_fill():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, [4, 9, 3, 2, 3], dtype=np.uint8)
    out = hide_segments(x, (3,), hide_prob=0.5, fill_value=(10, 20, 30), seed=5).numpy()
    assert out.dtype == np.uint8 and out.shape == x.shape
    fill = np.broadcast_to(np.array([10, 20, 30], np.uint8), x.shape[2:])
    n_hidden = 0
    for b in range(4):
        for s, e in _segments_of(3, 9):
            if np.array_equal(out[b, s:e], x[b, s:e]):
                continue
            n_hidden += 1
            for t in range(s, e):
                np.testing.assert_array_equal(out[b, t], fill)
    assert n_hidden > 0


def test_hidden_fraction_within_binomial_bounds():
    b, t, p = 200, 64, 0.3
    x = tf.ones([b, t, 2])
    out = hide_segments(x, (4,), hide_prob=p, fill_value=0.0, seed=11).numpy()
    per_segment = out[:, ::4, 0] == 0  # first frame of each of the 16 segments
    n = per_segment.size
    mean, sd = n * p, np.sqrt(n * p * (1 - p))
    assert abs(per_segment.sum() - mean) < 5 * sd
    # Every frame follows its segment's decision.
    np.testing.assert_array_equal(out[:, :, 0] == 0, np.repeat(per_segment, 4, axis=1))


def test_segment_lengths_drawn_uniformly_and_zero_keeps_whole():
    keep, length = segment_keep_mask(3000, 24, (0, 4, 8), 1.0, seed=2)
    keep, length = keep.numpy(), length.numpy()
    counts = np.array([(length == n).sum() for n in (0, 4, 8)])
    sd = np.sqrt(3000 * (1 / 3) * (2 / 3))
    assert np.all(np.abs(counts - 1000) < 5 * sd)
    assert keep[length == 0].all()          # 0: the whole example is kept
    assert not keep[length > 0].any()       # hide_prob 1: everything else hidden


def test_seeds():
    x = tf.random.stateless_normal([8, 40, 3], seed=[1, 2])
    a = hide_segments(x, (0, 2, 4, 8), 0.5, 0.0, seed=7).numpy()
    b = hide_segments(x, (0, 2, 4, 8), 0.5, 0.0, seed=7).numpy()
    c = hide_segments(x, (0, 2, 4, 8), 0.5, 0.0, seed=8).numpy()
    d = hide_segments(x, (0, 2, 4, 8), 0.5, 0.0, seed=tf.constant([7, 0])).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)  # int seed s == stateless seed [s, 0]
    assert not np.array_equal(a, c)
    assert hide_segments(x, (4,), 0.5, 0.0, seed=None).shape == x.shape


def test_padded_frames_never_change_and_lengths_are_respected():
    x = np.full([3, 10, 2], 5.0, np.float32)
    lengths = np.array([10, 6, 1])
    mask = np.arange(10)[None, :] < lengths[:, None]
    x[~mask] = -1.0  # padding value
    out = hide_segments(x, (4,), hide_prob=1.0, fill_value=0.0, seed=0, mask=mask).numpy()
    np.testing.assert_array_equal(out[~mask], -1.0)   # padding untouched
    np.testing.assert_array_equal(out[mask], 0.0)     # every real frame hidden (p = 1)
    # A 0/1 float mask behaves the same.
    out2 = hide_segments(x, (4,), 1.0, 0.0, seed=0, mask=mask.astype(np.float32)).numpy()
    np.testing.assert_array_equal(out, out2)


def test_identity_cases():
    x = tf.random.stateless_normal([2, 7, 3], seed=[0, 1])
    np.testing.assert_array_equal(hide_segments(x, (0,), 0.5, seed=1), x)
    np.testing.assert_array_equal(hide_segments(x, (4,), 0.0, seed=1), x)


def test_graph_safe_dynamic_shapes_and_tf_data():
    fn = tf.function(lambda x: hide_segments(x, (2, 3), 1.0, 9.0, seed=4),
                     input_signature=[tf.TensorSpec([None, None, 4], tf.float32)])
    out = fn(tf.zeros([2, 5, 4])).numpy()
    np.testing.assert_array_equal(out, 9.0)
    ds = tf.data.Dataset.from_tensor_slices(tf.zeros([4, 6, 2])).batch(2).map(
        lambda x: hide_segments(x, (3,), 1.0, 1.0, seed=0))
    for batch in ds:
        np.testing.assert_array_equal(batch.numpy(), 1.0)


def test_gradient_flows_through_kept_frames_only():
    x = tf.ones([1, 8, 2])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = hide_segments(x, (4,), 0.5, 0.0, seed=123)
        loss = tf.reduce_sum(y)
    grad = tape.gradient(loss, x).numpy()
    np.testing.assert_array_equal(grad, (y.numpy() != 0).astype(np.float32))


@pytest.mark.parametrize("kwargs, match", [
    (dict(segment_lengths=(-1,)), "non-negative"),
    (dict(segment_lengths=()), "at least one"),
    (dict(segment_lengths=(2.5,)), "integers"),
    (dict(hide_prob=1.5), r"\[0, 1\]"),
    (dict(fill_value=(1.0, 2.0)), "length 1 or 3"),
    (dict(fill_value=float("inf")), "finite"),
])
def test_bad_arguments(kwargs, match):
    args = dict(segment_lengths=(4,), hide_prob=0.5, fill_value=0.0, seed=0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        hide_segments(tf.zeros([1, 8, 3]), **args)


def test_bad_rank_and_mask_shape():
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        hide_segments(tf.zeros([8, 3]), (4,))
    with pytest.raises(ValueError, match="mask"):
        hide_segments(tf.zeros([1, 8, 3]), (4,), mask=tf.ones([8]))


def test_layer_identity_at_test_time_and_hides_in_training():
    layer = TemporalHideAndSeek((4,), hide_prob=1.0, fill_value=0.0, seed=0)
    x = tf.ones([2, 8, 3])
    assert layer(x) is x
    assert layer(x, training=False) is x
    np.testing.assert_array_equal(layer(x, training=True).numpy(), 0.0)
    mask = tf.constant([[1] * 8, [1] * 4 + [0] * 4], tf.float32)
    out = layer(x, mask=mask, training=True).numpy()
    np.testing.assert_array_equal(out[1, 4:], 1.0)  # padded frames untouched


def test_layer_seeded_sequence_and_config_round_trip():
    x = tf.random.stateless_normal([4, 32, 3], seed=[3, 3])
    a = TemporalHideAndSeek((0, 4, 8), 0.5, 0.0, seed=5)
    b = TemporalHideAndSeek((0, 4, 8), 0.5, 0.0, seed=5)
    first_a, first_b = a(x, training=True), b(x, training=True)
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.array_equal(first_a, a(x, training=True))  # fresh draw every call
    clone = TemporalHideAndSeek.from_config(a.get_config())
    assert clone.segment_lengths == (0, 4, 8) and clone.hide_prob == 0.5 and clone.seed == 5
