"""Post-hoc CAM methods beside trained WSOL methods: one table of localization figures.

`compare_cam_methods(models, source, methods, normalizations)` scores each model (a list
of `.keras` files, one per seed) with each CAM method (`keras_has.localize.cams`) and
each map normalisation (`minmax`, `max`, `ivr`), on the split with boxes and, where the
source has one, the split with masks (PxAP). The maps of a model and method are computed
once per split and replayed for every normalisation (`ReplayedCams`), so a slow method
(Score-CAM, one forward pass per channel) is paid for once.

The table has one row per (model, method, normalisation): MaxBoxAccV2, GT-known Loc and
Top-1 Loc (at `cam_threshold`), PxAP and Top-1 Clas, mean ± std over the seeds.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_has.experiments import report

__all__ = ["ReplayedCams", "CamArm", "compare_cam_methods", "write_gallery",
           "top1_loc_with_classifier", "TABLE_COLUMNS"]

TABLE_COLUMNS = (
    report.Column("MaxBoxAccV2", ("boxes", "max_box_acc_v2")),
    report.Column("GT-known Loc", ("boxes", "gt_known_loc")),
    report.Column("Top-1 Loc", ("boxes", "top1_loc")),
    report.Column("PxAP", ("masks", "pxap"), optional=True),
    report.Column("Top-1 Clas", ("boxes", "top1_cls")),
)


class ReplayedCams:
    """A CAM source for `keras_has.localize.evaluation.run_localization` that computes a
    model's maps once and replays them.

    The first pass over a dataset calls `compute_cams_and_logits(model, images, labels,
    method, layer)` per batch and keeps `(logits, cams)`; after `replay()`, the next
    pass returns the kept outputs in the same order. A replayed pass must see the same
    labels in the same order (e.g. the same split under another normalisation, or the
    mask split of the same images); otherwise it raises ValueError.

    Args:
      model: a Keras classifier.
      method, layer: as `keras_has.localize.cams.compute_cams`.
      batch_size: masked / ablated images per forward pass (Score-CAM, Ablation-CAM).
    """

    def __init__(self, model, method="cam", layer=None, batch_size=32):
        from keras_has.localize import cams as cam_lib

        cam_lib.plan_cams(model, method, layer)  # an unusable method fails here
        self.model, self.method, self.layer, self.batch_size = model, method, layer, batch_size
        self._kept: list = []
        self._next: int | None = None

    def replay(self) -> "ReplayedCams":
        """Makes the next pass return the kept maps; returns self."""
        self._next = 0
        return self

    def forward(self, images, labels):
        labels = np.asarray(labels)
        if self._next is None:
            from keras_has.localize.cams import compute_cams_and_logits

            cams, logits = compute_cams_and_logits(self.model, images, labels,
                                                   method=self.method, layer=self.layer,
                                                   batch_size=self.batch_size)
            out = (np.asarray(logits), np.asarray(cams))
            self._kept.append((labels, out))
            return out
        if self._next >= len(self._kept):
            raise ValueError("ReplayedCams: the replayed pass has more batches than the "
                             "first one")
        kept_labels, out = self._kept[self._next]
        self._next += 1
        if not np.array_equal(kept_labels, labels):
            raise ValueError("ReplayedCams: the replayed pass sees other labels than the "
                             "first (another split or order?)")
        return out


@dataclasses.dataclass(frozen=True)
class CamArm:
    """One group of rows: a trained model (one file per seed) and the CAM methods it is
    explained with.

    Args:
      title: the model's name in the table (e.g. "GAP (CAM)", "Hide-and-Seek").
      paths: `.keras` files, one per seed.
      methods: CAM method names.
    """

    title: str
    paths: tuple
    methods: tuple = ("cam",)


def _split_or_none(source, name):
    return name if name and name in getattr(source, "splits", ()) else None


def _run_model(path, source, splits, batch_size, image_size=None):
    """A run's `.keras` model, its eval datasets of `splits` and its settings
    (`read_run_settings`): the datasets read with the preprocessing and image size its
    run folder records."""
    from keras_has import data
    from keras_has.serve.loading import load_keras_model, model_image_size
    from keras_has.train import run_folder

    model = load_keras_model(path)
    settings = run_folder.read_run_settings(model_path=path, image_size=image_size,
                                            model_image_size=model_image_size(model))
    datasets = [data.make_eval_dataset(source, settings["image_size"], batch_size,
                                       split=split, preprocessing=settings["preprocessing"])
                for split in splits]
    return model, datasets, settings


def compare_cam_methods(arms, source, *, split="test", mask_split="auto",
                        normalizations=("minmax",), image_size=None, batch_size=32,
                        cam_threshold=0.2, max_batches=None, verbose=0):
    """Scores every (arm, method, normalisation) on `split` (and PxAP on `mask_split`).

    Args:
      arms: `CamArm`s.
      source: a `keras_has.data` source or what `get_source` accepts.
      split: the split with boxes.
      mask_split: the split with masks of the same images ("auto": `<split>_mask` when
        the source has it; None: none). Without one, PxAP comes from `split` itself
        when its examples carry masks (the built-in data).
      normalizations: names from `keras_has.localize.boxes.NORMALIZATIONS`.
      image_size: evaluation size (None: each model's input size).
      batch_size: images per batch.
      cam_threshold: the fixed threshold of GT-known / Top-1 Loc.
      max_batches: evaluate only the first batches (None: the whole split).

    Returns:
      `(rows, runs)`: `rows` are `(key, title)` pairs in table order and `runs[key][seed]`
      each run's record `{"boxes": metrics, "masks": metrics or None}`, for
      `report.summarize` / `report.format_table`.
    """
    from keras_has import data
    from keras_has.localize.boxes import check_normalization
    from keras_has.localize.evaluation import run_localization

    for name in normalizations:
        check_normalization(name)
    source = source if isinstance(source, data.Source) else data.get_source(source)
    source.check_localized(split)
    if mask_split == "auto":
        mask_split = _split_or_none(source, f"{split}_mask")
    rows, runs = [], {}
    for arm in arms:
        for seed, path in enumerate(arm.paths):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{arm.title}: model file {path} does not exist")
        for method in arm.methods:
            for norm in normalizations:
                key = f"{arm.title}|{method}|{norm}"
                rows.append((key, f"{arm.title}: {method}, {norm}"))
                runs[key] = {}
        for seed, path in enumerate(arm.paths):
            parts = ("boxes", "masks") if mask_split else ("boxes",)
            model, loaded, _ = _run_model(path, source, (split, mask_split)[:len(parts)],
                                          batch_size, image_size)
            datasets = dict(zip(parts, loaded))
            for method in arm.methods:
                cams = ReplayedCams(model, method, batch_size=batch_size)
                first = True
                for norm in normalizations:
                    record = {}
                    for part, dataset in datasets.items():
                        if not first:
                            cams.replay()
                        first = False
                        record[part] = run_localization(
                            cams, dataset, cam_threshold=cam_threshold,
                            cam_normalization=norm, max_batches=max_batches,
                            verbose=verbose).metrics
                    if "masks" not in record:  # masks in the box split itself (built-in)
                        pxap = record["boxes"].get("pxap")
                        record["masks"] = None if pxap is None else {"pxap": pxap}
                    runs[f"{arm.title}|{method}|{norm}"][seed] = record
    return rows, runs


def write_gallery(arms, source, output_dir, *, split="test", part_split="auto",
                  num_examples=8, normalization="minmax", batch_size=32, cam_threshold=0.2):
    """The same first test images under every (arm, method), side by side: the first
    seed's model of each arm (`keras_has.experiments.figures.write_figures`: the CAM over
    the image, object boxes green, part boxes blue, the box at `cam_threshold` red, its
    IoU). Returns the path of `gallery.png` (and `iou.png` / `iou_<column>.png`, the
    per-image IoU of the first column against each other one).

    Args:
      arms: `CamArm`s; each column is `"<title>: <method>"` (the title alone when the arm
        has one method).
      part_split: the split with the part's boxes of the same images ("auto":
        `<split>_head` when the source has it; None: none).
      num_examples: images in the gallery (the first of `split`).
      normalization: the maps' normalisation.
    """
    from keras_has import data
    from keras_has.experiments import figures
    from keras_has.localize.evaluation import run_localization

    if not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"num_examples: expected a positive int, received {num_examples!r}")
    if not arms:
        raise ValueError("arms: expected at least one CamArm, received none")
    source = source if isinstance(source, data.Source) else data.get_source(source)
    source.check_localized(split)
    if part_split == "auto":
        part_split = _split_or_none(source, f"{split}_head")
    batches = -(-num_examples // batch_size)
    examples, ious, titles, preprocessing, size = {}, {}, {}, None, None
    for arm in arms:
        if not arm.paths:
            raise ValueError(f"{arm.title}: no model files")
        model, (dataset,), settings = _run_model(arm.paths[0], source, (split,), batch_size,
                                                 image_size=size)
        if preprocessing is None:  # the images are drawn as the first arm's model saw them
            preprocessing, size = settings["preprocessing"], settings["image_size"]
            first_model = model
        for method in arm.methods:
            column = arm.title if len(arm.methods) == 1 else f"{arm.title}: {method}"
            result = run_localization(model, dataset, cam_threshold=cam_threshold,
                                      cam_method=method, cam_normalization=normalization,
                                      num_examples=num_examples, max_batches=batches,
                                      verbose=0)
            examples[column], ious[column], titles[column] = (result.examples, result.ious,
                                                              column)
    part_boxes = None
    if part_split:  # the part's boxes as the comparison reads them: examples of that split
        part = run_localization(first_model, data.make_eval_dataset(
            source, size, batch_size, split=part_split, preprocessing=preprocessing),
            num_examples=num_examples, max_batches=batches, verbose=0)
        part_boxes = figures.part_boxes_of(next(iter(examples.values())), part.examples)
    os.makedirs(output_dir, exist_ok=True)
    return figures.write_figures(examples, ious, titles, preprocessing, output_dir,
                                 part_boxes=part_boxes)


def top1_loc_with_classifier(box_model_path, class_model_path, source, *, split="test",
                             cam_threshold=0.2, loc_iou=0.5, batch_size=32):
    """Top-1 Loc of one model's boxes under another model's classes, in percent.

    Many WSOL papers report a localizer's Top-1 Loc with a separate (often the
    baseline's) classifier: an image counts when `class_model` predicts its label and
    `box_model`'s box (of the ground-truth class's CAM, at `cam_threshold`) has IoU >=
    `loc_iou` with a ground-truth box. With the same model twice this is the model's own
    Top-1 Loc. Each model reads the test images with its run's preprocessing.
    """
    import tensorflow as tf

    from keras_has import data
    from keras_has.localize.evaluation import run_localization

    source = source if isinstance(source, data.Source) else data.get_source(source)
    box_model, (box_data,), _ = _run_model(box_model_path, source, (split,), batch_size)
    class_model, (class_data,), _ = _run_model(class_model_path, source, (split,), batch_size)
    ious = run_localization(box_model, box_data, cam_threshold=cam_threshold,
                            iou_thresholds=(int(round(loc_iou * 100)),), verbose=0).ious
    labels, predicted = [], []
    for batch in class_data:
        logits = class_model(tf.convert_to_tensor(batch["image"]), training=False)
        predicted.append(np.argmax(np.asarray(logits), axis=1))
        labels.append(np.asarray(batch["label"]))
    labels, predicted = np.concatenate(labels), np.concatenate(predicted)
    if len(labels) != len(ious):
        raise ValueError(f"the two passes over {split!r} saw {len(ious)} and {len(labels)} "
                         "images")
    return 100.0 * float(np.mean((predicted == labels) & (np.asarray(ious) >= loc_iou)))
