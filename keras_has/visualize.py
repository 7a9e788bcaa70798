"""CAM overlays with boxes, and gallery grids (OpenCV), shared by callbacks and scripts.

Colours are RGB; ground-truth boxes green, predicted boxes red. Boxes are inclusive
``x0, y0, x1, y1`` pixels of the image they are drawn on.
"""
from __future__ import annotations

import cv2
import numpy as np

from keras_has.io_utils import atomic_write_bytes

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
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness)
    return out


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
