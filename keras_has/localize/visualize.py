"""CAM overlays with boxes, and gallery grids (OpenCV), shared by callbacks and scripts.

Colours are RGB; ground-truth boxes green, predicted boxes red, part boxes blue. Boxes
are inclusive ``x0, y0, x1, y1`` pixels of the image they are drawn on.
`comparison_gallery` and `iou_figure` are the main job's figures: the same images under
several models, labelled, and the per-image IoU of two models.
"""
from __future__ import annotations

import cv2
import numpy as np

from keras_has.util.files import atomic_write_bytes

__all__ = ['denormalize_images', 'to_uint8_images', 'overlay_cam', 'make_grid', 'gallery', 'save_png', 'put_text', 'draw_box', 'legend', 'comparison_gallery', 'iou_figure']

GT_COLOR = (0, 255, 0)
PRED_COLOR = (255, 0, 0)


def denormalize_images(images, mean, std):
    """``images * std + mean`` clipped to uint8 ``[B, H, W, 3]`` (mean/std in [0, 255])."""
    img = np.asarray(images, np.float32) * np.asarray(std, np.float32) + np.asarray(
        mean, np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_uint8_images(images):
    """Maps any float image batch to uint8 by per-image min-max (for display only)."""
    img = np.asarray(images, np.float32)
    if img.dtype == np.uint8:
        return img
    lo = img.min(axis=(1, 2, 3), keepdims=True)
    hi = img.max(axis=(1, 2, 3), keepdims=True)
    return np.clip((img - lo) / np.maximum(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def overlay_cam(image, cam, gt_boxes=(), pred_boxes=(), alpha=0.5, thickness=2):
    """One RGB uint8 image ``[H, W, 3]`` with a jet-coloured CAM and boxes drawn on it.

    Args:
        image: uint8 ``[H, W, 3]`` RGB.
        cam: ``[H, W]`` map in [0, 1] (same size as ``image``).
        gt_boxes / pred_boxes: ``[N, 4]`` inclusive boxes (rows of ``-1`` are skipped).
    """
    image = np.asarray(image)
    cam = np.asarray(cam, np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 [H, W, 3], received {image.dtype} {image.shape}")
    if cam.shape != image.shape[:2]:
        raise ValueError(f"cam: expected shape {image.shape[:2]}, received {cam.shape}")
    heat = cv2.applyColorMap(np.clip(cam * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    out = cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)
    for boxes, color in ((gt_boxes, GT_COLOR), (pred_boxes, PRED_COLOR)):
        for box in np.asarray(boxes, np.float64).reshape(-1, 4):
            if np.all(box == -1):
                continue
            draw_box(out, box, color, thickness)
    return out


def draw_box(image, box, color, thickness=2):
    """Draws an inclusive ``x0, y0, x1, y1`` box on ``image`` in place, its lines inside
    the box's pixels (none clipped at the image edge). A box that covers the whole image
    is drawn dashed, so that it does not read as a tile's border in a grid."""
    h, w = image.shape[:2]
    t = max(1, int(thickness))
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0 = max(0, min(x0, w - 1)), max(0, min(y0, h - 1))
    x1, y1 = max(x0, min(x1, w - 1)), max(y0, min(y1, h - 1))
    t = min(t, x1 - x0 + 1, y1 - y0 + 1)
    whole = x0 == 0 and y0 == 0 and x1 == w - 1 and y1 == h - 1
    dash = max(4, 3 * t)

    def fill(a, b, c, d):  # inclusive pixel rectangle
        cv2.rectangle(image, (a, b), (c, d), color, -1)

    def horizontal(y):
        step = 2 * dash if whole else x1 - x0 + 1
        for start in range(x0, x1 + 1, step):
            fill(start, y, min(start + (dash if whole else step) - 1, x1), y + t - 1)

    def vertical(x):
        step = 2 * dash if whole else y1 - y0 + 1
        for start in range(y0, y1 + 1, step):
            fill(x, start, x + t - 1, min(start + (dash if whole else step) - 1, y1))

    horizontal(y0)
    horizontal(y1 - t + 1)
    vertical(x0)
    vertical(x1 - t + 1)


def make_grid(images, cols=4, pad=2):
    """Tiles ``[N, H, W, 3]`` uint8 images into one ``[rows*H', cols*W', 3]`` image."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images: expected a non-empty [N, H, W, 3] batch, received "
                         f"{images.shape}")
    n, h, w, c = images.shape
    cols = max(1, min(int(cols), n))
    rows = -(-n // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y:y + h, x:x + w] = img
    return grid


def gallery(images, cams, gt_boxes, num_boxes, pred_boxes, cols=4):
    """Grid of CAM overlays with ground-truth (green) and predicted (red) boxes.

    Args:
        images: uint8 ``[N, H, W, 3]``; cams ``[N, H, W]`` in [0, 1];
        gt_boxes ``[N, M, 4]`` with ``num_boxes`` ``[N]``; pred_boxes ``[N, 4]``.
    """
    tiles = [overlay_cam(images[i], cams[i], np.asarray(gt_boxes[i])[:int(num_boxes[i])],
                         np.asarray(pred_boxes[i]).reshape(-1, 4))
             for i in range(len(images))]
    return make_grid(np.stack(tiles), cols=cols)


def save_png(path, image):
    """Writes an RGB uint8 image as a PNG atomically (temporary file, then rename)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode an image of shape {np.shape(image)} as PNG "
                      f"for {path}")
    atomic_write_bytes(path, encoded.tobytes())


# ------------------------------------------------------------- comparison figures
PART_COLOR = (0, 170, 255)
TEXT_COLOR = (20, 20, 20)
ARM_COLORS = ((230, 120, 20), (40, 90, 220), (30, 160, 60), (170, 60, 170))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def put_text(image, text, origin, scale=0.5, color=TEXT_COLOR, thickness=1, center=False,
             background=None):
    """Draws `text` on `image` in place; `origin` is the baseline's left end (or its
    centre with `center=True`). `background`: an RGB colour filled behind the text (so
    that lines under it do not cross it), or None. Returns the text's (width, height)."""
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x, y = origin
    if center:
        x = int(x - w / 2)
    if background is not None:
        cv2.rectangle(image, (int(x) - 2, int(y) - h - 2), (int(x) + w + 2, int(y) + base),
                      background, -1)
    cv2.putText(image, text, (int(x), int(y)), _FONT, scale, color, thickness, cv2.LINE_AA)
    return w, h


def _scale_boxes(boxes, factor):
    """Inclusive pixel boxes of an image scaled by `factor` (pixel i covers
    [i * f, (i + 1) * f - 1])."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    keep = ~np.all(b == -1, axis=1)
    out = b[keep].copy()
    out[:, :2] = out[:, :2] * factor
    out[:, 2:] = (out[:, 2:] + 1) * factor - 1
    return out


def _tile(image, cam, gt_boxes, part_boxes, pred_box, size, caption):
    """One enlarged overlay: CAM, ground truth (green), part (blue), prediction (red)."""
    h, w = image.shape[:2]
    factor = size / max(h, w)
    big = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    big_cam = cv2.resize(np.asarray(cam, np.float32), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    out = overlay_cam(big, np.clip(big_cam, 0, 1), _scale_boxes(gt_boxes, factor), (),
                      alpha=0.45)
    for box, color in [(b, PART_COLOR) for b in _scale_boxes(part_boxes, factor)] + \
                      [(b, PRED_COLOR) for b in _scale_boxes(pred_box, factor)]:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
    band = np.full((22, size, 3), 255, np.uint8)
    put_text(band, caption, (size / 2, 16), 0.5, center=True)
    return np.concatenate([out, band], axis=0)


def legend(width, entries, height=30):
    """A white strip with coloured line samples and their names: `[(name, rgb), ...]`."""
    strip = np.full((height, width, 3), 255, np.uint8)
    x = 10
    for name, color in entries:
        cv2.line(strip, (x, height // 2), (x + 24, height // 2), color, 3)
        w, _ = put_text(strip, name, (x + 30, height // 2 + 5), 0.45)
        x += 30 + w + 22
    return strip


def comparison_gallery(images, arms, gt_boxes, num_boxes, part_boxes=None, tile=192,
                       images_per_row=2, loc_iou=0.5):
    """The same test images under several models, labelled, with a legend.

    Args:
        images: uint8 ``[N, H, W, 3]``.
        arms: list of ``(title, cams [N, H, W] in [0, 1], pred_boxes [N, 4], ious [N])``;
            each image gets one tile per arm, side by side under the arm's title.
        gt_boxes: ``[N, M, 4]`` with ``num_boxes`` ``[N]`` (the whole object).
        part_boxes: optional ``[N, M', 4]`` (``-1`` rows skipped): the most
            discriminative part.
        tile: side of each enlarged tile in pixels.
        images_per_row: images (groups of tiles) per row.
        loc_iou: IoU counted as a correct box (marked in the captions).

    Returns:
        uint8 ``[H', W', 3]`` RGB.
    """
    images = np.asarray(images)
    n = len(images)
    if n == 0 or not arms:
        raise ValueError(f"comparison_gallery: expected images and arms, received {n} "
                         f"images and {len(arms)} arms")
    for title, cams, preds, ious in arms:
        if len(cams) != n or len(preds) != n or len(ious) != n:
            raise ValueError(f"comparison_gallery: arm {title!r} has {len(cams)} CAMs, "
                             f"{len(preds)} boxes, {len(ious)} IoUs for {n} images")
    groups = []
    for i in range(n):
        gt = np.asarray(gt_boxes[i])[:int(num_boxes[i])]
        part = () if part_boxes is None else np.asarray(part_boxes[i])
        tiles = []
        for title, cams, preds, ious in arms:
            mark = "ok" if ious[i] >= loc_iou else "miss"
            tiles.append(_tile(images[i], cams[i], gt, part, preds[i], tile,
                               f"IoU {ious[i]:.2f} ({mark})"))
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        groups.append(np.concatenate(sum(([t, gap] for t in tiles), [])[:-1], axis=1))
    group_w = groups[0].shape[1]
    header = np.full((26, group_w, 3), 255, np.uint8)
    for k, (title, *_rest) in enumerate(arms):
        centre = k * (tile + 4) + tile / 2
        put_text(header, title, (centre, 19), 0.6, ARM_COLORS[k % len(ARM_COLORS)], 2,
                 center=True)
    groups = [np.concatenate([header, g], axis=0) for g in groups]
    grid = make_grid(np.stack(groups), cols=images_per_row, pad=10)
    entries = [("ground truth (object)", GT_COLOR)]
    if part_boxes is not None:
        entries.append(("part", PART_COLOR))
    entries.append(("predicted box", PRED_COLOR))
    bottom = legend(grid.shape[1], entries)
    note = np.full((22, grid.shape[1], 3), 255, np.uint8)
    put_text(note, f"CAM of the true class (red = high); 'ok': IoU >= {loc_iou:.1f} "
             "with the object box", (10, 15), 0.42)
    return np.concatenate([grid, bottom, note], axis=0)


def iou_figure(ious, loc_iou=0.5, size=360):
    """Per-image IoU of two models: a scatter (one point per image, first model on x)
    and both histograms, so a shift of the whole distribution is visible.

    Args:
        ious: ``[(title, ious [N]), (title, ious [N])]`` over the same images.
        loc_iou: the IoU that counts as a correct box (dashed lines).
        size: side of each panel in pixels.

    Returns:
        uint8 RGB image.
    """
    if len(ious) != 2:
        raise ValueError(f"iou_figure: expected two models, received {len(ious)}")
    (ta, a), (tb, b) = [(t, np.clip(np.asarray(v, np.float64), 0, 1)) for t, v in ious]
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"iou_figure: expected two equal-length IoU lists, received "
                         f"shapes {a.shape} and {b.shape}")
    m, top = 48, 34  # margins
    panel = lambda: np.full((size + m + top, size + m + 12, 3), 255, np.uint8)  # noqa: E731
    to_px = lambda v: m + int(round(v * size))  # noqa: E731
    to_py = lambda v: top + size - int(round(v * size))  # noqa: E731

    def axes(img, xlabel, ylabel, title, ymax_text="1.0"):
        cv2.rectangle(img, (m, top), (m + size, top + size), (90, 90, 90), 1)
        for t in (0.0, 0.5, 1.0):
            put_text(img, f"{t:.1f}", (to_px(t), top + size + 15), 0.4, center=True)
        put_text(img, xlabel, (m + size / 2, top + size + 34), 0.45, center=True)
        put_text(img, title, (m + size / 2, 20), 0.5, center=True)
        put_text(img, "0", (m - 14, top + size + 4), 0.4)
        put_text(img, ymax_text, (m - 30, top - 4), 0.4)
        ylab = np.full((20, size, 3), 255, np.uint8)
        put_text(ylab, ylabel, (size / 2, 14), 0.45, center=True)
        img[top:top + size, 2:22] = np.rot90(ylab)  # reads bottom to top

    # Scatter.
    sc = panel()
    axes(sc, f"IoU, {ta}", f"IoU, {tb}", "per-image IoU (one dot per test image)")
    cv2.line(sc, (to_px(0), to_py(0)), (to_px(1), to_py(1)), (160, 160, 160), 1)
    for v in (loc_iou,):
        for k in range(0, size, 8):
            cv2.line(sc, (to_px(v), top + k), (to_px(v), top + min(k + 4, size)), (0, 0, 0), 1)
            cv2.line(sc, (m + k, to_py(v)), (m + min(k + 4, size), to_py(v)), (0, 0, 0), 1)
    for x, y in zip(a, b):
        color = ARM_COLORS[1] if y > x else ARM_COLORS[0]
        cv2.circle(sc, (to_px(x), to_py(y)), 2, color, -1, cv2.LINE_AA)
    above = int(np.sum(b > a))
    white = (255, 255, 255)  # the legends sit on white, above the dashed lines
    put_text(sc, f"{tb} higher: {above}/{a.size}", (m + 6, top + 16), 0.42, ARM_COLORS[1],
             background=white)
    lower_right = f"{ta} higher: {int(np.sum(a > b))}/{a.size}"
    (text_w, _), _ = cv2.getTextSize(lower_right, _FONT, 0.42, 1)
    put_text(sc, lower_right, (m + size - text_w - 6, top + size - 8), 0.42, ARM_COLORS[0],
             background=white)

    # Histograms (10 bins over [0, 1]).
    hi = panel()
    bins = np.linspace(0, 1, 11)
    ca, _ = np.histogram(a, bins)
    cb, _ = np.histogram(b, bins)
    # The tallest bar reaches 75% of the panel: the top quarter holds the statistics.
    peak = max(int(ca.max()), int(cb.max()), 1) / 0.75
    axes(hi, "IoU at the CAM threshold", "images", "IoU histogram",
         ymax_text=str(int(round(peak))))
    bw = size / 10
    for k in range(10):
        for j, (count, color) in enumerate(((ca[k], ARM_COLORS[0]), (cb[k], ARM_COLORS[1]))):
            x0 = int(m + k * bw + 2 + j * (bw - 4) / 2)
            x1 = int(m + k * bw + 2 + (j + 1) * (bw - 4) / 2) - 1
            y0 = top + size - int(round(count / peak * size))
            if count:
                cv2.rectangle(hi, (x0, y0), (x1, top + size), color, -1)
    for k in range(0, size, 8):
        cv2.line(hi, (to_px(loc_iou), top + k), (to_px(loc_iou), top + min(k + 4, size)),
                 (0, 0, 0), 1)
    put_text(hi, f"{ta}: mean {a.mean():.2f}, >= {loc_iou:.1f}: {100 * np.mean(a >= loc_iou):.1f}%",
             (m + 6, top + 16), 0.42, ARM_COLORS[0], background=white)
    put_text(hi, f"{tb}: mean {b.mean():.2f}, >= {loc_iou:.1f}: {100 * np.mean(b >= loc_iou):.1f}%",
             (m + 6, top + 34), 0.42, ARM_COLORS[1], background=white)
    return np.concatenate([sc, np.full((sc.shape[0], 10, 3), 255, np.uint8), hi], axis=1)
