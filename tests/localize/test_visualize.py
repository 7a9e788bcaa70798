"""Comparison figures: the labelled gallery and the per-image IoU figure."""
import cv2
import numpy as np
import pytest

from keras_has.localize import visualize


def _arms(n, rng):
    cams = rng.random((n, 16, 16))
    return [("GAP", cams, np.tile([[1, 1, 4, 4]], (n, 1)), np.linspace(0, 1, n)),
            ("Hide-and-Seek", cams, np.tile([[1, 1, 12, 12]], (n, 1)), np.linspace(1, 0, n))]


def test_gallery_size_labels_and_legend():
    rng = np.random.default_rng(0)
    n, tile = 3, 160
    images = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    gt = np.tile([[[0, 0, 12, 10], [-1, -1, -1, -1]]], (n, 1, 1))
    part = np.tile([[[0, 0, 3, 3]]], (n, 1, 1))
    grid = visualize.comparison_gallery(images, _arms(n, rng), gt, np.ones(n, int), part,
                                        tile=tile, images_per_row=2)
    # A group is two tiles of `tile` px plus a 4-px gap, under a 26-px title row and
    # over a 22-px caption; groups are tiled two per row with 10-px padding, then a
    # 30-px legend and a 22-px note.
    group_w, group_h = 2 * tile + 4, 26 + tile + 22
    assert grid.shape == (2 * (group_h + 10) + 10 + 30 + 22, 2 * (group_w + 10) + 10, 3)
    title_row = grid[10:10 + 26, 10:10 + group_w]
    assert (title_row != 255).any(axis=2).sum() > 100  # the arm titles are drawn
    # The left half of the title row holds "GAP" in its colour, the right half
    # "Hide-and-Seek" in another: the two labels differ.
    left, right = title_row[:, :tile], title_row[:, tile + 4:]
    assert not np.array_equal(left, right)
    legend = grid[-52:-22]
    assert (legend != 255).any(axis=2).sum() > 200
    for colour in (visualize.GT_COLOR, visualize.PART_COLOR, visualize.PRED_COLOR):
        assert (legend == colour).all(axis=2).any(), colour


def test_gallery_rejects_arms_of_other_lengths():
    rng = np.random.default_rng(0)
    arms = _arms(3, rng)
    arms[1] = (arms[1][0], arms[1][1][:2], arms[1][2], arms[1][3])
    with pytest.raises(ValueError, match="Hide-and-Seek.*2 CAMs.*3 images"):
        visualize.comparison_gallery(np.zeros((3, 16, 16, 3), np.uint8), arms,
                                     np.zeros((3, 1, 4)), np.ones(3, int))


def test_iou_figure_panels_and_colours():
    a = np.array([0.1, 0.2, 0.3, 0.9])
    b = np.array([0.6, 0.7, 0.2, 0.95])
    fig = visualize.iou_figure([("GAP", a), ("HaS", b)], size=200)
    assert fig.shape[0] == 200 + 48 + 34 and fig.shape[1] == 2 * (200 + 48 + 12) + 10
    for colour in visualize.ARM_COLORS[:2]:  # both arms' dots / bars are drawn
        assert (fig == colour).all(axis=2).sum() > 10
    with pytest.raises(ValueError, match="equal-length"):
        visualize.iou_figure([("GAP", a), ("HaS", b[:3])])


def test_draw_box_stays_inside_the_box_and_dashes_a_whole_image_box():
    red = (255, 0, 0)
    img = np.zeros((20, 30, 3), np.uint8)
    visualize.draw_box(img, (5, 4, 14, 11), red, thickness=3)
    drawn = (img == red).all(-1)
    ys, xs = np.nonzero(drawn)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 11, 5, 14)  # no pixel outside
    assert not drawn[7:9, 9:11].any()  # hollow
    whole = np.zeros((20, 30, 3), np.uint8)
    visualize.draw_box(whole, (0, 0, 29, 19), red, thickness=1)
    top = (whole[0] == red).all(-1)
    assert top.any() and not top.all()  # dashed, not a solid border
    solid = np.zeros((20, 30, 3), np.uint8)
    visualize.draw_box(solid, (0, 0, 28, 19), red, thickness=1)
    assert (solid[0, :29] == red).all()


def test_prediction_label_is_whole_inside_the_image():
    from keras_has.serve.predict import overlay_image

    image = np.full((40, 60, 3), 255, np.uint8)
    data = cv2.imencode(".png", image)[1].tobytes()
    for box in ((0, 0, 59, 39), (10, 0, 30, 5), (5, 30, 50, 39)):
        out = overlay_image(data, np.ones((4, 4), np.float32), box, "a long class name")
        dark = (out == 30).all(-1)  # the label's background
        assert dark.any()
        ys, xs = np.nonzero(dark)
        assert ys.min() >= 0 and ys.max() < 40
