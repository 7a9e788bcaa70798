"""Tests of keras_has.hiding.hide_patches against independent, structural expectations.

The checks never look at the op's internals: from input and output alone they find
which pixels were hidden (all channels equal to the fill), verify that every pixel is
either untouched or fully hidden, and infer each image's grid size from the hidden
pattern (the sizes whose cells, truncated at the edges, are all-hidden or all-kept).
"""
import numpy as np
import pytest
import tensorflow as tf

from keras_has.hiding import ops as hiding_ops
from keras_has.hiding import hide_patches

# ---------------------------------------------------------------------------------
# Independent reference checks.


def _images(shape, dtype, seed=0):
    """Random images whose pixels never equal the fills used below (0, 0.5, 7, 1..3)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(10.0, 250.0, size=shape)
    if tf.as_dtype(dtype) == tf.uint8:
        values = np.round(values)
    return tf.constant(values.astype(np.float32)).numpy(), tf.cast(values, dtype)


def _hidden_map(x, y, fill):
    """[..., H, W] bool map of hidden pixels; asserts every pixel is kept or fully hidden."""
    x = np.asarray(tf.cast(x, tf.float32))
    y = np.asarray(tf.cast(y, tf.float32))
    fill = np.broadcast_to(np.asarray(fill, np.float32), x.shape[-1:])
    kept = np.all(y == x, axis=-1)
    hidden = np.all(y == fill, axis=-1)
    assert np.all(kept | hidden), "some pixel is neither unchanged nor equal to the fill"
    return hidden


def _cells_uniform(hidden, size):
    """True if every S x S cell (anchored top-left, edge cells truncated) is uniform."""
    height, width = hidden.shape
    for top in range(0, height, size):
        for left in range(0, width, size):
            cell = hidden[top:top + size, left:left + size]
            if cell.any() and not cell.all():
                return False
    return True


def _consistent_sizes(hidden, grid_sizes):
    """The grid sizes (0 = untouched image) that explain one image's hidden pattern."""
    sizes = []
    for size in grid_sizes:
        if size == 0:
            if not hidden.any():
                sizes.append(0)
        elif _cells_uniform(hidden, size):
            sizes.append(size)
    return sizes


def _inferred_size(hidden, grid_sizes):
    """The coarsest grid size consistent with the pattern (a multiple of S is also
    S-uniform, so the coarsest one is the drawn one unless the pattern is degenerate)."""
    sizes = _consistent_sizes(hidden, grid_sizes)
    assert sizes, "no grid size explains the hidden pattern"
    return 0 if not hidden.any() else max(sizes)


def _hidden_cell_fraction(hidden, size):
    """Hidden cells and total cells of one image for grid size S."""
    cells = hidden[::size, ::size]  # the top-left pixel of each (uniform) cell
    return int(cells.sum()), cells.size


def _binomial_ok(count, n, p, sigmas=5.0):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p)) + 1e-9


# ---------------------------------------------------------------------------------
# Exactness, on both internal paths (run-length mask and full-resolution mask).

EXACT_CASES = [
    # shape, dtype, grid_sizes, fill
    ((6, 24, 20, 3), "float32", (4, 8), 0.0),
    ((6, 24, 20, 3), "float32", (4, 8), (1.0, 2.0, 3.0)),
    ((6, 24, 20, 3), "uint8", (4, 8), 0.0),
    ((6, 24, 20, 3), "uint8", (4, 8), (1.0, 2.0, 3.0)),
    ((4, 16, 32, 3), "uint8", (16,), 7.0),
    ((5, 10, 7, 3), "float32", (3,), 0.5),
    ((5, 10, 7, 3), "float32", (3, 4), 0.0),
    ((3, 9, 11, 2), "bfloat16", (2, 5), (0.5, 7.0)),
    ((3, 16, 16, 4), "float16", (8,), 0.0),
    ((3, 13, 21, 1), "float32", (0, 5, 6), 7.0),
    ((3, 12, 16, 3), "float64", (4,), (1.0, 2.0, 3.0)),
    ((3, 12, 16, 2), "bfloat16", (4, 8), 0.0),
]


@pytest.mark.parametrize("shape,dtype,grid_sizes,fill", EXACT_CASES)
def test_every_pixel_kept_or_hidden_and_every_cell_uniform(shape, dtype, grid_sizes, fill):
    _, x = _images(shape, dtype)
    y = hide_patches(x, grid_sizes=grid_sizes, hide_prob=0.5, fill_value=fill, seed=3)
    assert y.shape == x.shape and y.dtype == x.dtype
    hidden = _hidden_map(x, y, fill)
    for image in hidden:
        assert _consistent_sizes(image, grid_sizes), "no grid size explains the pattern"
    assert 0.2 < hidden.mean() < 0.8  # something was hidden, not everything


def test_hide_prob_one_hides_everything_including_truncated_edge_cells():
    _, x = _images((2, 10, 7, 3), "float32")
    y = hide_patches(x, grid_sizes=(3,), hide_prob=1.0, fill_value=(1.0, 2.0, 3.0), seed=0)
    expected = np.broadcast_to(np.array([1.0, 2.0, 3.0], np.float32), x.shape)
    np.testing.assert_array_equal(y.numpy(), expected)


@pytest.mark.parametrize("fill", [0.0, -1.5])
def test_bit_exact_with_nan_and_negative_zero(fill):
    # Kept pixels keep their exact bits (NaN stays NaN, -0.0 stays -0.0); hidden pixels
    # are exactly the fill, whatever was there.
    x = np.full((2, 8, 8, 3), np.nan, np.float32)
    x[:, ::2] = -0.0
    y = hide_patches(tf.constant(x), (2,), hide_prob=0.5, fill_value=fill, seed=1).numpy()
    fill_bits = np.array(fill, np.float32).view(np.int32)
    hidden = np.all(y.view(np.int32) == fill_bits, axis=-1)
    kept = np.all(y.view(np.int32) == x.view(np.int32), axis=-1)
    assert np.all(hidden | kept) and hidden.any() and kept.any()


def test_gradient_is_one_on_kept_pixels_and_zero_on_hidden():
    _, x = _images((3, 12, 10, 3), "float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = hide_patches(x, (2, 4), fill_value=7.0, seed=6)
        loss = tf.reduce_sum(y * 3.0)
    grad = tape.gradient(loss, x).numpy()
    hidden = _hidden_map(x, y, 7.0)
    np.testing.assert_array_equal(grad, np.where(hidden[..., None], 0.0, 3.0) * np.ones(x.shape))


def test_hide_prob_zero_and_only_zero_size_leave_images_unchanged():
    _, x = _images((2, 10, 7, 3), "uint8")
    np.testing.assert_array_equal(hide_patches(x, (4,), hide_prob=0.0, seed=1), x)
    np.testing.assert_array_equal(hide_patches(x, (0,), hide_prob=1.0, seed=1), x)


def test_rank3_input_is_one_image_of_the_batched_op():
    _, x = _images((12, 9, 3), "float32")
    y = hide_patches(x, (4,), seed=7)
    assert y.shape == (12, 9, 3)
    np.testing.assert_array_equal(y, hide_patches(x[None], (4,), seed=7)[0])


def test_uint8_fill_is_rounded_and_clipped_to_the_uint8_range():
    x = tf.fill([1, 4, 4, 3], tf.constant(100, tf.uint8))
    y = hide_patches(x, (4,), hide_prob=1.0, fill_value=(-3.0, 2.6, 300.0), seed=0)
    np.testing.assert_array_equal(y.numpy()[0, 0, 0], [0, 3, 255])


@pytest.mark.parametrize("layout", [(1, 0, 4), (4, 0, 4), (2, 0, 1), (1, 4, 4), (4, 4, 2),
                                    (2, 2, 2), (1, 1, 1), (4, 2, 1)])
def test_every_mask_layout_gives_the_same_output(monkeypatch, layout):
    # Same seed, same cells: each internal way of laying out and applying the mask
    # (rows per mask entry, pixels per mask entry or 0 = one per word, word bytes)
    # must give the automatic result.
    for dtype, fill in (("float32", 0.0), ("float32", (1.0, 2.0, 3.0)), ("uint8", 5.0),
                        ("uint8", (1.0, 2.0, 3.0))):
        _, x = _images((4, 24, 20, 3), dtype)
        expected = hide_patches(x, (4, 8), fill_value=fill, seed=11)
        monkeypatch.setattr(hiding_ops, "LAYOUT_OVERRIDE", layout)
        np.testing.assert_array_equal(hide_patches(x, (4, 8), fill_value=fill, seed=11),
                                      expected)
        monkeypatch.setattr(hiding_ops, "LAYOUT_OVERRIDE", None)
        _hidden_map(x, expected, fill)


# ---------------------------------------------------------------------------------
# Statistics.


@pytest.mark.parametrize("size,hide_prob", [(3, 0.5), (4, 0.25), (7, 0.8), (16, 0.5)])
def test_hidden_cell_fraction_within_binomial_bounds(size, hide_prob):
    _, x = _images((64, 33, 26, 1), "float32")
    y = hide_patches(x, (size,), hide_prob=hide_prob, seed=size)
    hidden = _hidden_map(x, y, 0.0)
    count = total = 0
    for image in hidden:
        assert _cells_uniform(image, size)
        c, n = _hidden_cell_fraction(image, size)
        count, total = count + c, total + n
    assert _binomial_ok(count, total, hide_prob), (count, total, hide_prob)


def test_grid_size_is_drawn_per_image_uniformly():
    grid_sizes = (4, 6)  # a random 4-pattern is (almost) never 6-uniform and vice versa
    _, x = _images((300, 24, 24, 1), "float32")
    hidden = _hidden_map(x, hide_patches(x, grid_sizes, seed=5), 0.0)
    inferred = [_consistent_sizes(image, grid_sizes) for image in hidden]
    unique = [s[0] for s in inferred if len(s) == 1]
    assert len(unique) >= 295
    assert set(unique[:10]) == {4, 6}  # both sizes within one batch
    assert _binomial_ok(unique.count(4), len(unique), 0.5)


def test_zero_in_grid_sizes_leaves_images_whole_at_the_expected_rate():
    # On 64x64 images S = 16 has 16 cells: an all-kept draw has probability 2^-16.
    _, x = _images((1200, 64, 64, 1), "float32")
    hidden = _hidden_map(x, hide_patches(x, (0, 4, 16), hide_prob=0.5, seed=9), 0.0)
    whole = int((~hidden.reshape(1200, -1).any(axis=1)).sum())
    assert _binomial_ok(whole, 1200, 1 / 3), whole


def test_paper_mixed_sizes_all_occur_on_a_224_like_image():
    grid_sizes = (0, 16, 32, 44, 56)
    _, x = _images((60, 112, 112, 3), "uint8")
    hidden = _hidden_map(x, hide_patches(x, grid_sizes, seed=2), 0.0)
    inferred = [_inferred_size(image, grid_sizes) for image in hidden]
    assert set(inferred) == {0, 16, 32, 44, 56}


# ---------------------------------------------------------------------------------
# Seeds and fresh masks.


def test_seed_reproducible_and_sensitive():
    _, x = _images((4, 24, 24, 3), "float32")
    a = hide_patches(x, (4, 8), seed=1)
    np.testing.assert_array_equal(a, hide_patches(x, (4, 8), seed=1))
    np.testing.assert_array_equal(a, hide_patches(x, (4, 8), seed=tf.constant([1, 0])))
    assert not np.array_equal(a, hide_patches(x, (4, 8), seed=2))
    assert not np.array_equal(a, hide_patches(x, (4, 8), seed=tf.constant([1, 1])))


def test_no_seed_draws_fresh_masks_eagerly_and_in_tf_function():
    x = tf.ones([2, 24, 24, 3])
    assert not np.array_equal(hide_patches(x, (4,)), hide_patches(x, (4,)))
    fn = tf.function(lambda images: hide_patches(images, (4,)))
    assert not np.array_equal(fn(x), fn(x))


# ---------------------------------------------------------------------------------
# Graph modes: tf.function with dynamic shapes, tf.data, XLA.


def test_dynamic_shapes_in_tf_function_match_the_static_result():
    _, x = _images((3, 24, 20, 3), "float32")
    fn = tf.function(
        lambda images: hide_patches(images, (4, 8), fill_value=(1.0, 2.0, 3.0), seed=4),
        input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)],
    )
    y = fn(x)
    np.testing.assert_array_equal(y, hide_patches(x, (4, 8), fill_value=(1.0, 2.0, 3.0), seed=4))
    _, other = _images((2, 11, 17, 3), "float32")  # same trace, another shape
    _hidden_map(other, fn(other), (1.0, 2.0, 3.0))


def test_inside_tf_data_map_fresh_per_element_and_epoch():
    _, x = _images((24, 20, 3), "uint8")
    ds = tf.data.Dataset.from_tensors(x).repeat(3).map(lambda im: hide_patches(im, (4,)))
    first, second = list(ds), list(ds)
    for y in first:
        hidden = _hidden_map(x, y, 0.0)
        assert _cells_uniform(hidden, 4)
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], second[0])
    batched = tf.data.Dataset.from_tensors(x).repeat(4).batch(2).map(
        lambda im: hide_patches(im, (4, 8), seed=3))
    for y in batched:
        _hidden_map(tf.stack([x, x]), y, 0.0)


@pytest.mark.parametrize("dtype,fill", [("float32", 0.0), ("uint8", (1.0, 2.0, 3.0)),
                                        ("bfloat16", 0.5)])
def test_under_xla_same_masks_as_without(dtype, fill):
    _, x = _images((3, 24, 20, 3), dtype)
    fn = tf.function(lambda im: hide_patches(im, (0, 4, 6), fill_value=fill, seed=8),
                     jit_compile=True)
    y = fn(x)
    np.testing.assert_array_equal(
        tf.cast(y, tf.float32), tf.cast(hide_patches(x, (0, 4, 6), fill_value=fill, seed=8),
                                        tf.float32))
    hidden = _hidden_map(x, y, fill)
    assert all(_consistent_sizes(image, (0, 4, 6)) for image in hidden)
    unseeded = tf.function(lambda im: hide_patches(im, (4,)), jit_compile=True)
    assert not np.array_equal(unseeded(x), unseeded(x))


# ---------------------------------------------------------------------------------
# Argument errors: raised at once, naming the argument and the value.


@pytest.mark.parametrize(
    "kwargs,error,pattern",
    [
        ({"hide_prob": 1.5}, ValueError, r"hide_prob: .*1\.5"),
        ({"hide_prob": -0.1}, ValueError, r"hide_prob: .*-0\.1"),
        ({"hide_prob": float("nan")}, ValueError, r"hide_prob: .*nan"),
        ({"hide_prob": "half"}, TypeError, r"hide_prob: .*'half'"),
        ({"grid_sizes": (16, -4)}, ValueError, r"grid_sizes: .*-4"),
        ({"grid_sizes": ()}, ValueError, r"grid_sizes: .*empty"),
        ({"grid_sizes": (16, 2.5)}, TypeError, r"grid_sizes: .*2\.5"),
        ({"grid_sizes": "16"}, TypeError, r"grid_sizes: .*'16'"),
        ({"fill_value": (1.0, 2.0)}, ValueError, r"`fill_value`.*C=3.*2 values"),
        ({"fill_value": [[0.0]]}, ValueError, r"`fill_value`"),
        ({"seed": tf.constant([1, 2, 3])}, ValueError, r"`seed`.*shape"),
        ({"seed": 1.5}, TypeError, r"`seed`.*float"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        hide_patches(tf.zeros([1, 8, 8, 3]), **kwargs)


@pytest.mark.parametrize("shape", [(8, 8), (1, 1, 8, 8, 3)])
def test_bad_rank_raises(shape):
    with pytest.raises(ValueError, match=rf"`images`.*rank {len(shape)}"):
        hide_patches(tf.zeros(shape))


def test_unsupported_dtype_raises():
    with pytest.raises(TypeError, match=r"`images`.*int32"):
        hide_patches(tf.zeros([1, 8, 8, 3], tf.int32))


def test_dynamic_channel_count_mismatch_fails_at_run_time():
    fn = tf.function(lambda im: hide_patches(im, (4,), fill_value=(1.0, 2.0, 3.0)),
                     input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="fill_value"):
        fn(tf.zeros([1, 8, 8, 2]))


@pytest.mark.parametrize("sizes, ok", [
    ((16, 16), False), ((16.0, 32), True), ((16, -1), False), ((), False), (("16",), False),
])
def test_op_layer_and_config_accept_the_same_grid_sizes(sizes, ok):
    """One validator: what hide_patches accepts, HideAndSeek and HidingConfig accept
    (the config also accepts () = no hiding)."""
    from keras_has.config import HidingConfig
    from keras_has.hiding.layer import HideAndSeek

    outcomes = []
    for build in (lambda: hide_patches(tf.zeros([1, 8, 8, 3]), sizes),
                  lambda: HideAndSeek(grid_sizes=sizes),
                  lambda: HidingConfig(grid_sizes=sizes)):
        try:
            build()
            outcomes.append(True)
        except (TypeError, ValueError) as e:
            assert "grid_sizes" in str(e)
            outcomes.append(False)
    expected_config = True if sizes == () else ok
    assert outcomes == [ok, ok, expected_config]
