"""WSOL localization metrics: Top-1 / Top-5 Cls, GT-known Loc, Top-1 Loc, MaxBoxAcc
(V1 and V2, Choe et al., CVPR 2020) and PxAP, accumulated batch by batch.

Semantics follow clovaai/wsolevaluation (``evaluation.py``): CAM thresholds
``np.arange(0, 1, cam_curve_interval)``; a box is correct when its IoU with the best
matching ground-truth box is ``>= iou / 100``; MaxBoxAcc is the accuracy at the best
threshold; PxAP is the area under the pixel precision-recall curve. Differences are
the box rule (``box_rule``, see :mod:`keras_has.localize.boxes`) and that V1 / V2 / the
Top-1 Loc sweep all come from one pass per map over every level
(:func:`keras_has.localize.boxes.sweep_levels`).
"""
from __future__ import annotations

import numpy as np

from keras_has.localize import boxes as loc
from keras_has.config.commands import CAM_CURVE_INTERVAL

__all__ = ["metric_title", 'LocalizationEvaluator', 'pxap_from_histograms', 'DEFAULT_CAM_CURVE_INTERVAL']

# The step of the threshold sweep everywhere (evaluation, training callbacks, the
# comparison, `keras-has evaluate`), so one model gets one MaxBoxAcc; defined with the
# commands' settings (`keras_has.config.commands.CAM_CURVE_INTERVAL`).
DEFAULT_CAM_CURVE_INTERVAL = CAM_CURVE_INTERVAL


def metric_title(key: str) -> str:
    """The name a table shows for a metric key of `LocalizationEvaluator.compute`
    (the same names `compare` and the fine-tuning benchmark print), e.g.
    `max_box_acc_v2_threshold_iou30` -> "MaxBoxAccV2 best threshold at IoU 30"."""
    import re

    base = {"num_images": "Images", "top1_cls": "Top-1 Clas", "top5_cls": "Top-5 Clas",
            "gt_known_loc": "GT-known Loc", "top1_loc": "Top-1 Loc", "pxap": "PxAP",
            "max_box_acc": "MaxBoxAcc", "max_box_acc_v2": "MaxBoxAccV2",
            "top1_loc_max": "Top-1 Loc (best threshold)",
            "num_skipped_images": "Skipped images"}
    if key in base:
        return base[key]
    match = re.fullmatch(r"(max_box_acc(?:_v2)?|top1_loc_max)(_threshold)?(?:_iou(\d+))?", key)
    if not match:
        return key
    name, threshold, iou = match.groups()
    title = base[name].replace(" (best threshold)", "")
    if threshold:
        title += " best threshold"
    return title + (f" at IoU {iou}" if iou else "")


class LocalizationEvaluator:
    """Accumulates localization results over batches; :meth:`compute` returns percentages.

    Args:
        cam_threshold: fixed CAM threshold (fraction of the map's max) for
            ``gt_known_loc`` and ``top1_loc`` (the paper: 0.2 AlexNet-GAP, 0.3
            GoogLeNet-GAP).
        cam_curve_interval: step of the threshold sweep ``np.arange(0, 1, step)``
            (``DEFAULT_CAM_CURVE_INTERVAL``; wsolevaluation's command line uses 0.001).
        iou_thresholds: IoU thresholds in percent for MaxBoxAccV2 (mean over them).
        box_rule: ``"tight"`` (default) or ``"wsolevaluation"`` (contour rule, +1 box
            edge, slower: one ``findContours`` per distinct level).
        loc_iou: IoU threshold in percent of GT-known / Top-1 Loc and MaxBoxAcc (V1).

    ``accumulate(cams, boxes, num_boxes, labels, logits=None, predictions=None,
    masks=None, ignore=None, normalized=False)``:

        * ``cams``: ``[B, H, W]`` CAMs of the ground-truth class, at the resolution of
          ``boxes`` / ``masks`` (upsample with ``localization.resize_cams``). Raw or
          normalised: they are min-max normalised here; NaN / inf / constant maps
          become zeros (no box is then found: ``(0, 0, 0, 0)``). With
          ``normalized=True`` they are maps already in [0, 1] (another normalisation,
          e.g. ``max`` or ``ivr`` of ``localization.normalize_cams``), used as they are.
        * ``boxes``: ``[B, M, 4]`` ground-truth boxes, inclusive ``x0, y0, x1, y1``;
          rows ``>= num_boxes[b]`` are padding (``-1``).
        * ``num_boxes``: ``[B]`` int, ``1 <= num_boxes[b] <= M``.
        * ``labels``: ``[B]`` int ground-truth classes.
        * ``logits``: ``[B, K]`` scores, or ``predictions``: ``[B, k]`` class ids sorted
          by decreasing score (``k >= 1``; Top-5 needs ``k >= 5`` or ``K >= 5``).
          One of the two is required.
        * ``masks`` / ``ignore``: optional ``[B, H, W]`` foreground masks in {0, 1}
          and bool ignore masks, for PxAP (pass them for every batch or never).

        After each call, ``image_ious`` lists every image's IoU (with its best-matching
        ground-truth box) of the box read at ``cam_threshold``, in accumulation order.

        Top-1 Loc counts an image when its top-1 prediction is the label *and* the box
        of the label's CAM is correct: for those images the predicted class's CAM is
        the ground-truth class's CAM, so no second map is needed.
    """

    def __init__(self, cam_threshold=0.2, cam_curve_interval=DEFAULT_CAM_CURVE_INTERVAL,
                 iou_thresholds=(30, 50, 70), box_rule="tight", loc_iou=50):
        loc.check_box_rule(box_rule)
        if not 0.0 <= float(cam_threshold) < 1.0:
            raise ValueError(f"cam_threshold: expected a fraction in [0, 1), received "
                             f"{cam_threshold!r}")
        if not 0.0 < float(cam_curve_interval) <= 0.5:
            raise ValueError(f"cam_curve_interval: expected a step in (0, 0.5], received "
                             f"{cam_curve_interval!r}")
        ious = tuple(int(v) for v in iou_thresholds)
        if not ious or any(not 0 < v <= 100 for v in ious):
            raise ValueError(f"iou_thresholds: expected percentages in (0, 100], received "
                             f"{iou_thresholds!r}")
        if not 0 < int(loc_iou) <= 100:
            raise ValueError(f"loc_iou: expected a percentage in (0, 100], received {loc_iou!r}")
        self.cam_threshold = float(cam_threshold)
        self.cam_curve_interval = float(cam_curve_interval)
        self.iou_thresholds = ious
        self.loc_iou = int(loc_iou)
        self.box_rule = box_rule
        self.thresholds = np.arange(0, 1, self.cam_curve_interval)
        self._all_ious = tuple(sorted(set(ious) | {self.loc_iou}))
        self.reset()

    def reset(self):
        """Clears the accumulated state."""
        n = len(self.thresholds)
        self.count = 0
        self.top1 = 0
        self.top5 = 0
        self.gt_known = 0
        self.top1_loc = 0
        self.image_ious = []  # per image, in order: IoU of the box at cam_threshold
        self.v1_correct = {i: np.zeros(n, np.int64) for i in self._all_ious}
        self.v2_correct = {i: np.zeros(n, np.int64) for i in self._all_ious}
        self.top1_sweep = np.zeros(n, np.int64)
        self.num_bins = n + 2
        self.bin_edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.true_hist = np.zeros(self.num_bins)
        self.false_hist = np.zeros(self.num_bins)
        self._has_masks = None

    # ------------------------------------------------------------------ checks
    def _check(self, cams, boxes, num_boxes, labels, logits, predictions, masks, ignore):
        cams = np.asarray(cams)
        if cams.ndim != 3:
            raise ValueError(f"cams: expected shape [B, H, W], received {cams.shape}")
        b, h, w = cams.shape
        boxes = np.asarray(boxes, np.float64)
        if boxes.ndim != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
            raise ValueError(f"boxes: expected shape [B={b}, M, 4], received {boxes.shape}")
        num_boxes = np.asarray(num_boxes)
        if num_boxes.shape != (b,) or not np.issubdtype(num_boxes.dtype, np.integer):
            raise ValueError(f"num_boxes: expected int shape [{b}], received "
                             f"{num_boxes.dtype} {num_boxes.shape}")
        if (num_boxes < 1).any() or (num_boxes > boxes.shape[1]).any():
            raise ValueError(f"num_boxes: expected values in [1, {boxes.shape[1]}], "
                             f"received {num_boxes.tolist()}")
        valid = np.arange(boxes.shape[1])[None, :] < num_boxes[:, None]
        loc.check_boxes(np.where(valid[..., None], boxes, 0.0), "boxes")
        labels = np.asarray(labels)
        if labels.shape != (b,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels: expected int shape [{b}], received "
                             f"{labels.dtype} {labels.shape}")
        if (logits is None) == (predictions is None):
            raise ValueError("accumulate: pass exactly one of logits [B, K] or "
                             "predictions [B, k]")
        if logits is not None:
            logits = np.asarray(logits, np.float64)
            if logits.ndim != 2 or logits.shape[0] != b:
                raise ValueError(f"logits: expected shape [{b}, K], received {logits.shape}")
            k = min(5, logits.shape[1])
            predictions = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        predictions = np.asarray(predictions)
        if predictions.ndim != 2 or predictions.shape[0] != b or predictions.shape[1] < 1:
            raise ValueError(f"predictions: expected shape [{b}, k >= 1], received "
                             f"{predictions.shape}")
        has_masks = masks is not None
        if self._has_masks is not None and has_masks != self._has_masks:
            raise ValueError("masks: pass masks for every batch or for none")
        if has_masks:
            masks = np.asarray(masks)
            if masks.shape != cams.shape:
                raise ValueError(f"masks: expected shape {cams.shape}, received {masks.shape}")
            ignore = (np.zeros(cams.shape, bool) if ignore is None
                      else np.asarray(ignore).astype(bool))
            if ignore.shape != cams.shape:
                raise ValueError(f"ignore: expected shape {cams.shape}, received {ignore.shape}")
        elif ignore is not None:
            raise ValueError("ignore: given without masks")
        return boxes, num_boxes, labels, predictions, masks, ignore

    # -------------------------------------------------------------- accumulate
    def accumulate(self, cams, boxes, num_boxes, labels, logits=None, predictions=None,
                   masks=None, ignore=None, normalized=False):
        """Adds one batch (see the class docstring for the arguments)."""
        boxes, num_boxes, labels, predictions, masks, ignore = self._check(
            cams, boxes, num_boxes, labels, logits, predictions, masks, ignore)
        maps = np.asarray(cams, np.float32) if normalized else loc.normalize_cams(cams)
        gray = loc.quantize_cams(maps)
        top1 = predictions[:, 0] == labels
        top5 = (predictions[:, :5] == labels[:, None]).any(axis=1)
        self.count += len(maps)
        self.top1 += int(top1.sum())
        self.top5 += int(top5.sum())
        for i in range(len(maps)):
            gt = boxes[i, :num_boxes[i]]
            v1_iou, v2_iou = self.level_ious(gray[i], gt)
            levels = loc.threshold_levels(self.thresholds, gray[i].max())
            fixed = int(loc.threshold_levels(self.cam_threshold, gray[i].max()))
            s1, s2 = v1_iou[np.minimum(levels, 256)], v2_iou[np.minimum(levels, 256)]
            for t in self._all_ious:
                self.v1_correct[t] += s1 >= t / 100
                self.v2_correct[t] += s2 >= t / 100
            self.image_ious.append(float(v1_iou[min(fixed, 256)]))
            ok = self.image_ious[-1] >= self.loc_iou / 100
            self.gt_known += int(ok)
            self.top1_loc += int(ok and top1[i])
            if top1[i]:
                self.top1_sweep += s1 >= self.loc_iou / 100
        if masks is not None:
            self._has_masks = True
            fg = masks > 0.5
            keep = ~(ignore & ~fg)
            self.true_hist += np.histogram(maps[fg & keep], bins=self.bin_edges)[0]
            self.false_hist += np.histogram(maps[~fg & keep], bins=self.bin_edges)[0]
        else:
            self._has_masks = False

    def level_ious(self, gray, gt_boxes):
        """Best-match IoU at each level ``0..256`` of one quantised map.

        Returns:
            ``(largest [257], any [257])``: IoU of the largest region's box, and the
            max over all regions' boxes; entry ``L`` describes foreground
            ``gray > L``; levels without foreground use the box ``(0, 0, 0, 0)``.
        """
        gt = np.asarray(gt_boxes, np.float64)
        empty = float(loc.best_iou(np.zeros((1, 4)), gt)[0])
        largest = np.full(257, empty)
        anyreg = np.full(257, empty)
        max_gray = int(gray.max())
        if max_gray == 0:
            return largest, anyreg
        if self.box_rule == "tight":
            sweep = loc.sweep_levels(gray, gt)
            largest[:max_gray] = loc.best_iou(sweep.largest[:max_gray], gt)
            anyreg[:max_gray] = sweep.best_iou[:max_gray]
        else:
            levels = np.unique(loc.threshold_levels(self.thresholds, max_gray))
            levels = np.unique(np.append(levels[levels < max_gray],
                                         loc.threshold_levels(self.cam_threshold, max_gray)))
            for lv in levels[levels < max_gray]:
                all_boxes = loc.boxes_at_level(gray, int(lv), True, "wsolevaluation")
                big = loc.boxes_at_level(gray, int(lv), False, "wsolevaluation")
                largest[lv] = loc.best_iou(big[None], gt)[0]
                anyreg[lv] = loc.best_iou(all_boxes, gt).max()
        return largest, anyreg

    # ------------------------------------------------------------------ compute
    def compute(self):
        """Returns a dict of percentages (and best thresholds as fractions).

        Keys: ``top1_cls``, ``top5_cls``, ``gt_known_loc``, ``top1_loc`` (fixed
        threshold), ``max_box_acc`` (V1) and ``max_box_acc_threshold``,
        ``max_box_acc_v2`` and, per IoU ``i``, ``max_box_acc_v2_iou{i}`` /
        ``max_box_acc_v2_threshold_iou{i}`` / ``max_box_acc_iou{i}``,
        ``top1_loc_max`` / ``top1_loc_max_threshold`` (Top-1 Loc over the sweep),
        ``pxap`` when masks were given, and ``num_images``.
        """
        if self.count == 0:
            raise RuntimeError("LocalizationEvaluator.compute: no images accumulated")
        pct = 100.0 / self.count
        th = self.thresholds
        out = {"num_images": self.count,
               "top1_cls": self.top1 * pct, "top5_cls": self.top5 * pct,
               "gt_known_loc": self.gt_known * pct, "top1_loc": self.top1_loc * pct}
        v1 = self.v1_correct[self.loc_iou] * pct
        out["max_box_acc"] = float(v1.max())
        out["max_box_acc_threshold"] = float(th[int(np.argmax(v1))])
        v2 = []
        for i in self._all_ious:
            acc1 = self.v1_correct[i] * pct
            acc2 = self.v2_correct[i] * pct
            out[f"max_box_acc_iou{i}"] = float(acc1.max())
            if i in self.iou_thresholds:
                out[f"max_box_acc_v2_iou{i}"] = float(acc2.max())
                out[f"max_box_acc_v2_threshold_iou{i}"] = float(th[int(np.argmax(acc2))])
                v2.append(acc2.max())
        out["max_box_acc_v2"] = float(np.mean(v2))
        t1 = self.top1_sweep * pct
        out["top1_loc_max"] = float(t1.max())
        out["top1_loc_max_threshold"] = float(th[int(np.argmax(t1))])
        if self._has_masks:
            out["pxap"] = pxap_from_histograms(self.true_hist, self.false_hist)
        return {k: (float(v) if k != "num_images" else int(v)) for k, v in out.items()}


def pxap_from_histograms(true_hist, false_hist):
    """PxAP (percent) from score histograms of foreground / background pixels.

    Bins ascend (``[t0, t1), ..., [1, 2), [2, 3)``); counting from the top, the
    cumulative sums are true / false positives at each threshold; AP is
    ``sum(precision[i] * (recall[i] - recall[i-1]))`` over thresholds with a positive
    prediction, as in wsolevaluation's ``MaskEvaluator``.
    """
    tp = np.cumsum(np.asarray(true_hist, np.float64)[::-1])
    fp = np.cumsum(np.asarray(false_hist, np.float64)[::-1])
    num_true = tp[-1]
    if num_true <= 0:
        raise RuntimeError("PxAP: no foreground pixel in the masks")
    predicted = tp + fp
    precision = tp / np.where(predicted > 0, predicted, 1)
    recall = tp / num_true
    ap = (precision[1:] * np.diff(recall))[predicted[1:] > 0].sum()
    return float(ap * 100)
