"""Box transforms of keras_has.data.pipeline: hand-computed cases and boxes that follow the image."""
import numpy as np
import pytest
import tensorflow as tf

from keras_has.data import crop_boxes, flip_boxes, resize_boxes, resize_size_for, train_transform


def test_resize_boxes_matches_wsolevaluation_resize_bbox():
    # wsolevaluation: int(x * new_w / old_w), int(y * new_h / old_h).
    # Image 400 (h) x 600 (w) -> 64 x 64: x scale 64/600, y scale 64/400.
    boxes = [[92, 66, 459, 342], [0, 0, 599, 399]]
    out = resize_boxes(boxes, (400, 600), (64, 64)).numpy()
    # 92*64/600 = 9.81 -> 9; 66*64/400 = 10.56 -> 10; 459*64/600 = 48.96 -> 48; 342*.16 = 54.72 -> 54
    np.testing.assert_array_equal(out, [[9, 10, 48, 54], [0, 0, 63, 63]])
    # Upscaling, non-square target (h=30, w=20) from (h=10, w=5).
    out = resize_boxes([[1, 2, 4, 9]], (10, 5), (30, 20)).numpy()
    np.testing.assert_array_equal(out, [[4, 6, 16, 27]])
    assert resize_boxes(np.zeros([0, 4]), (10, 5), (30, 20)).shape == (0, 4)


def test_crop_boxes_translates_clips_and_drops():
    boxes = [[10, 10, 20, 20],   # inside the 16x16 window at (top 8, left 5)
             [0, 0, 6, 30],      # partly left of the window
             [30, 30, 40, 40],   # entirely outside (below-right)
             [0, 0, 4, 4]]       # entirely left/above
    out, keep = crop_boxes(boxes, (8, 5), (16, 16))
    np.testing.assert_array_equal(keep.numpy(), [True, True, False, False])
    np.testing.assert_array_equal(out.numpy(), [[5, 2, 15, 12], [0, 0, 1, 15]])


def test_flip_boxes_mirrors_inclusive_coordinates():
    out = flip_boxes([[0, 1, 2, 3], [5, 0, 9, 9]], 10).numpy()
    # x -> 9 - x, swapping x0 and x1.
    np.testing.assert_array_equal(out, [[7, 1, 9, 3], [0, 0, 4, 9]])
    # Flipping twice is the identity.
    np.testing.assert_array_equal(flip_boxes(flip_boxes([[1, 2, 3, 4]], 8), 8).numpy(), [[1, 2, 3, 4]])


def test_resize_size_scales_paper_256_over_224():
    assert resize_size_for(224) == 256
    assert resize_size_for(64) == 73  # 64 * 256 / 224 = 73.14
    assert resize_size_for(112) == 128


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max(), ys.max()]


@pytest.mark.parametrize("seed", [(0, 1), (3, 7), (11, 2), (5, 5), (8, 0), (2, 9)])
def test_train_transform_boxes_follow_crop_and_flip_exactly(seed):
    # With R == the input size, the resize is the identity, so the crop and flip of a
    # painted rectangle must give exactly the transformed box.
    size, crop = 20, 12
    image = np.zeros([size, size, 3], np.uint8)
    box = [6, 9, 13, 15]  # x0, y0, x1, y1 inclusive
    image[box[1]:box[3] + 1, box[0]:box[2] + 1] = 200
    out, boxes, params = train_transform(tf.constant(image), tf.constant([box], tf.float32),
                                         tf.constant(seed, tf.int64), crop, resize_size=size)
    out = out.numpy()
    assert out.shape == (crop, crop, 3)
    top, left = params["offset"].numpy()
    assert 0 <= top <= size - crop and 0 <= left <= size - crop
    # Independent expectation: crop and flip the numpy image by hand.
    expected = image[top:top + crop, left:left + crop]
    if params["flip"].numpy():
        expected = expected[:, ::-1]
    np.testing.assert_allclose(out, expected, atol=1e-3)
    painted = out[:, :, 0] > 100
    if painted.any():
        np.testing.assert_array_equal(boxes.numpy(), [_tight_box(painted)])
    else:
        assert boxes.shape[0] == 0


def test_train_transform_covers_both_flips_and_varied_offsets():
    image = tf.zeros([40, 40, 3], tf.uint8)
    flips, offsets = set(), set()
    for i in range(24):
        _, _, params = train_transform(image, tf.zeros([0, 4]), tf.constant([i, 3], tf.int64), 32)
        flips.add(bool(params["flip"].numpy()))
        offsets.add(tuple(params["offset"].numpy()))
        assert all(0 <= o <= resize_size_for(32) - 32 for o in params["offset"].numpy())
    assert flips == {True, False}
    assert len(offsets) > 6


def test_train_transform_resize_then_crop_boxes():
    # 10 x 20 image (h x w) resized to R = 20 x 20, cropped 16 at (top 2, left 3), no flip:
    # box (4, 2, 9, 7) -> resize: x*20/20, y*20/10 -> (4, 4, 9, 14) -> crop -> (1, 2, 6, 12).
    image = tf.zeros([10, 20, 3], tf.uint8)
    for i in range(48):
        _, boxes, params = train_transform(image, tf.constant([[4, 2, 9, 7]], tf.float32),
                                           tf.constant([i, 0], tf.int64), 16, resize_size=20)
        top, left = params["offset"].numpy()
        expected = np.array([[4 - left, 4 - top, 9 - left, 14 - top]], np.float32)
        expected = np.clip(expected, 0, 15)
        if params["flip"].numpy():
            expected = np.array([[15 - expected[0, 2], expected[0, 1], 15 - expected[0, 0], expected[0, 3]]])
        np.testing.assert_array_equal(boxes.numpy(), expected)
        if (top, left) == (2, 3) and not params["flip"].numpy():
            np.testing.assert_array_equal(boxes.numpy(), [[1, 2, 6, 12]])
