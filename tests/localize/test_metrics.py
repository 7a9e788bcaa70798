"""LocalizationEvaluator on tiny sets with hand-computed answers."""
import numpy as np
import pytest

from keras_has.localize import boxes as loc
from keras_has.localize.metrics import LocalizationEvaluator, pxap_from_histograms


def _block(box, size=8):
    cam = np.zeros((size, size), np.float32)
    x0, y0, x1, y1 = box
    cam[y0:y1 + 1, x0:x1 + 1] = 1.0
    return cam


def _tiny_set():
    """4 images, 8x8, binary CAMs (the box is the same at every threshold)."""
    cams = np.stack([
        _block((2, 2, 5, 5)),                       # exact match of its single GT box
        _block((0, 0, 1, 1)),                       # matches the 2nd of two GT boxes
        _block((0, 0, 3, 3)),                       # misses its GT box
        np.maximum(_block((0, 0, 2, 2)), _block((5, 5, 6, 6))),  # small blob is the GT
    ])
    boxes = -np.ones((4, 2, 4))
    boxes[0, 0] = (2, 2, 5, 5)
    boxes[1, :2] = [(4, 4, 7, 7), (0, 0, 1, 1)]
    boxes[2, 0] = (4, 4, 7, 7)
    boxes[3, 0] = (5, 5, 6, 6)
    num_boxes = np.array([1, 2, 1, 1])
    labels = np.array([0, 1, 0, 3])
    logits = np.array([[5, 1, 0, 0, 0, 0],     # top1 correct
                       [0, 3, 5, 0, 0, 0],     # top1 wrong (2), label 1 in top 5
                       [5, 0, 0, 0, 0, 0],     # top1 correct, box wrong
                       [0, 0, 0, 9, 0, 0]], np.float32)  # top1 correct
    return cams, boxes, num_boxes, labels, logits


def test_tiny_set_known_answers():
    ev = LocalizationEvaluator(cam_threshold=0.2, cam_curve_interval=0.1)
    cams, boxes, num_boxes, labels, logits = _tiny_set()
    ev.accumulate(cams[:2], boxes[:2], num_boxes[:2], labels[:2], logits=logits[:2])
    ev.accumulate(cams[2:], boxes[2:], num_boxes[2:], labels[2:], logits=logits[2:])
    m = ev.compute()
    assert m["num_images"] == 4
    assert m["top1_cls"] == pytest.approx(75.0)
    assert m["top5_cls"] == pytest.approx(100.0)
    # Largest-region box correct for images 0 and 1; top-1 correct for 0, 2, 3.
    assert m["gt_known_loc"] == pytest.approx(50.0)
    assert m["top1_loc"] == pytest.approx(25.0)
    assert m["max_box_acc"] == pytest.approx(50.0)
    assert m["top1_loc_max"] == pytest.approx(25.0)
    # All regions: image 3's small blob matches too.
    for i in (30, 50, 70):
        assert m[f"max_box_acc_v2_iou{i}"] == pytest.approx(75.0)
    assert m["max_box_acc_v2"] == pytest.approx(75.0)
    assert "pxap" not in m


def test_threshold_dependence_and_predictions_input():
    # A graded map: level 0.75 keeps the 2x2 core, 0.25 the 4x4 block.
    cam = np.zeros((6, 6), np.float32)
    cam[1:5, 1:5] = 0.5
    cam[2:4, 2:4] = 1.0
    gt = np.array([[[2, 2, 3, 3]]], float)
    # Fixed threshold 0.2 gives the 4x4 box: IoU 4/16 < 0.5.
    ev = LocalizationEvaluator(cam_threshold=0.2, cam_curve_interval=0.25)
    ev.accumulate(cam[None], gt, np.array([1]), np.array([1]), predictions=np.array([[1]]))
    m = ev.compute()
    assert m["gt_known_loc"] == 0.0 and m["top1_loc"] == 0.0
    # Thresholds 0, .25: the 4x4 box (level 63 < 127); .5, .75: the 2x2 core.
    assert m["max_box_acc"] == 100.0
    assert m["max_box_acc_threshold"] == 0.5
    assert m["top1_loc_max"] == 100.0
    assert m["max_box_acc_v2_iou70"] == 100.0
    # Fixed threshold 0.6 gives the core.
    ev = LocalizationEvaluator(cam_threshold=0.6, cam_curve_interval=0.25)
    ev.accumulate(cam[None], gt, np.array([1]), np.array([1]), predictions=np.array([[1]]))
    assert ev.compute()["gt_known_loc"] == 100.0


def test_sweep_equals_per_threshold_loop_on_random_maps():
    """Evaluator (all-level sweep) == one boxes_from_cams call per threshold."""
    rng = np.random.default_rng(0)
    thresholds = np.arange(0, 1, 0.05)
    for trial in range(12):
        low = rng.random((3, 4)).astype(np.float32)
        cam = loc.resize_cams(low[None], (20, 24))
        if trial % 3 == 0:
            cam = cam + 0.3 * rng.random(cam.shape).astype(np.float32)
        cam = loc.normalize_cams(cam)
        gt = np.array([[[3, 2, 12, 15], [10, 5, 22, 18]]], float)
        ev = LocalizationEvaluator(cam_curve_interval=0.05)
        v1, v2 = ev.level_ious(loc.quantize_cams(cam)[0], gt[0])
        levels = loc.threshold_levels(thresholds, loc.quantize_cams(cam)[0].max())
        want1 = [loc.best_iou(loc.boxes_from_cams(cam, t), gt[0])[0] for t in thresholds]
        want2 = [loc.best_iou(loc.boxes_from_cams(cam, t, True)[0], gt[0]).max()
                 for t in thresholds]
        np.testing.assert_allclose(v1[levels], want1)
        np.testing.assert_allclose(v2[levels], want2)


def test_wsolevaluation_rule_in_evaluator():
    cam = np.zeros((4, 6), np.float32)
    cam[0, :5] = 1.0
    cam[2:4, 0:2] = 1.0
    gt = np.array([[[0, 2, 2, 3]]], float)
    for rule, expected in (("tight", 0.0), ("wsolevaluation", 100.0)):
        ev = LocalizationEvaluator(box_rule=rule)
        ev.accumulate(cam[None], gt, np.array([1]), np.array([0]), predictions=np.array([[0]]))
        assert ev.compute()["gt_known_loc"] == expected


def test_pxap_hand_computed():
    # Scores ranked 1.0 (fg), 0.5 (bg), 0.25 (fg), 0.0 (bg): AP = (1/1 + 2/3) / 2.
    cam = np.array([[[1.0, 0.5], [0.0, 0.25]]], np.float32)
    mask = np.array([[[1, 0], [0, 1]]], np.float32)
    ev = LocalizationEvaluator(cam_curve_interval=0.25)
    ev.accumulate(cam, np.array([[[0, 0, 1, 1]]]), np.array([1]), np.array([0]),
                  predictions=np.array([[0]]), masks=mask)
    assert ev.compute()["pxap"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    # Ignoring the background pixel scored 0.5 makes the ranking perfect.
    ev.reset()
    ev.accumulate(cam, np.array([[[0, 0, 1, 1]]]), np.array([1]), np.array([0]),
                  predictions=np.array([[0]]), masks=mask,
                  ignore=np.array([[[False, True], [False, False]]]))
    assert ev.compute()["pxap"] == pytest.approx(100.0)
    # Histograms end with the always-empty [2, 3) bin, as the evaluator builds them.
    assert pxap_from_histograms([0, 0, 1, 0], [1, 0, 0, 0]) == pytest.approx(100.0)


def test_nan_maps_are_handled():
    ev = LocalizationEvaluator()
    cam = np.full((1, 5, 5), np.nan, np.float32)
    ev.accumulate(cam, np.array([[[0, 0, 0, 0]]]), np.array([1]), np.array([0]),
                  predictions=np.array([[0]]))
    # No foreground: the box is (0, 0, 0, 0), which matches this GT box exactly.
    assert ev.compute()["gt_known_loc"] == 100.0


@pytest.mark.parametrize("change, match", [
    (dict(cams=np.zeros((2, 4))), "cams"),
    (dict(boxes=np.zeros((1, 1, 4))), "boxes"),
    (dict(boxes=np.array([[[3, 0, 1, 1]], [[0, 0, 1, 1]]])), "x0, y0, x1, y1"),
    (dict(num_boxes=np.array([0, 1])), "num_boxes"),
    (dict(num_boxes=np.array([1.0, 1.0])), "num_boxes"),
    (dict(labels=np.array([0])), "labels"),
    (dict(logits=None), "exactly one"),
    (dict(logits=np.zeros((3, 4))), "logits"),
])
def test_input_errors(change, match):
    args = dict(cams=np.zeros((2, 4, 4)), boxes=np.array([[[0, 0, 1, 1]], [[0, 0, 1, 1]]]),
                num_boxes=np.array([1, 1]), labels=np.array([0, 1]), logits=np.zeros((2, 3)))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        LocalizationEvaluator().accumulate(**args)


def test_constructor_and_compute_errors():
    with pytest.raises(ValueError, match="cam_threshold"):
        LocalizationEvaluator(cam_threshold=1.5)
    with pytest.raises(ValueError, match="iou_thresholds"):
        LocalizationEvaluator(iou_thresholds=(0, 50))
    with pytest.raises(RuntimeError, match="no images"):
        LocalizationEvaluator().compute()


def test_metric_titles_are_the_tables_names():
    from keras_has.localize.metrics import metric_title

    assert metric_title("top1_cls") == "Top-1 Clas"
    assert metric_title("max_box_acc_v2") == "MaxBoxAccV2"
    assert metric_title("max_box_acc_v2_threshold_iou30") == "MaxBoxAccV2 best threshold at IoU 30"
    assert metric_title("max_box_acc_iou50") == "MaxBoxAcc at IoU 50"
    assert metric_title("top1_loc_max_threshold") == "Top-1 Loc best threshold"
    assert metric_title("something_new") == "something_new"
