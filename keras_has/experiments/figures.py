"""The figures of an experiment: the same test images under every arm, and per-image IoUs.

`write_figures(examples, ious, titles, preprocessing, output_dir)` writes
`gallery.png` (each image's tiles side by side, one per arm: the true class's CAM over
the image, the object's boxes in green, the part's in blue when known, the predicted box
in red, captioned with its IoU: the paper's Figure 3) and the per-image IoU figures of
the first arm against each other one (`iou.png` for two arms, `iou_<arm>.png` for
more), with `keras_has.localize.visualize`.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["write_figures", "part_boxes_of"]


def part_boxes_of(examples: dict, part_examples: dict | None):
    """The part boxes `[N, M, 4]` of `examples`' images from the examples kept on a part
    target, or None when there are none or they are not the same images in the same
    order (a part split that lists other images)."""
    if not part_examples:
        return None
    if list(examples["image_id"]) != list(part_examples["image_id"]):
        return None
    return part_examples["boxes"]


def write_figures(examples: dict, ious: dict, titles: dict, preprocessing, output_dir: str,
                  part_boxes=None, images_per_row: int | None = None):
    """Writes gallery.png and the IoU figures; returns `(gallery path, first IoU figure
    path or None)`.

    Args:
      examples: `{arm: run_localization examples}` in column order, all of the same
        images (checked).
      ious: `{arm: per-image IoUs}`.
      titles: `{arm: column title}`.
      preprocessing: the `Preprocessing` the images were fed with (`to_pixels`).
      output_dir: where the figures go.
      part_boxes: optional `[N, M, 4]` part boxes of the images (`part_boxes_of`).
      images_per_row: images per gallery row (default: 2 for up to two arms, else 1).

    Raises:
      RuntimeError: the arms' example images differ.
    """
    from keras_has.localize import visualize

    arms = list(examples)
    base = examples[arms[0]]
    for arm in arms[1:]:
        if list(base["image_id"]) != list(examples[arm]["image_id"]):
            raise RuntimeError("gallery: the arms' example images differ: "
                               f"{list(base['image_id'])} vs {list(examples[arm]['image_id'])}")
    images = preprocessing.to_pixels(base["image"])
    n = len(images)
    columns = [(titles[arm], examples[arm]["cam"], examples[arm]["pred_box"],
                np.asarray(ious[arm])[:n]) for arm in arms]
    if images_per_row is None:
        images_per_row = 2 if len(arms) <= 2 else 1
    gallery = visualize.comparison_gallery(images, columns, base["boxes"], base["num_boxes"],
                                           part_boxes=part_boxes,
                                           images_per_row=images_per_row)
    gallery_path = os.path.join(output_dir, "gallery.png")
    visualize.save_png(gallery_path, gallery)
    iou_paths = []
    for i, arm in enumerate(arms[1:], start=1):
        path = os.path.join(output_dir, "iou.png" if len(arms) == 2 else f"iou_{arm}.png")
        visualize.save_png(path, visualize.iou_figure(
            [(titles[arms[0]], ious[arms[0]]), (titles[arm], ious[arm])]))
        iou_paths.append(path)
    return gallery_path, (iou_paths[0] if iou_paths else None)
