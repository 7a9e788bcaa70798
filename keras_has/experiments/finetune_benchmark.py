"""Fine-tuning benchmark on real photos: GAP vs Hide-and-Seek from a pretrained backbone.

`run_benchmark(base, ...)` is the library side of `scripts/benchmark_finetune.py`. For
every seed it fine-tunes two runs of `base` that differ only in hiding (the GAP baseline
and Hide-and-Seek), timing each, and scores both on a WSOL folder with several
ground truths for the same test images (pets3: whole-body boxes in `test`, head boxes in
`test_head`, masks in `test_mask`):

- Top-1 Clas, GT-known Loc, Top-1 Loc and MaxBoxAccV2 against the object (body) boxes;
- GT-known Loc against the part (head) boxes: a CAM that boxes only the head scores high
  there and low on the body;
- PxAP against the masks;
- the linear probe's Top-1 (frozen pretrained features, `keras_has.experiments.probe`), once.

Training runs without an evaluation split (the evaluation happens once, after training,
on all three ground truths), so the measured wall time is the fine-tuning alone. It
writes under `output_dir`: `<arm>_seed<k>/` (the runs; a finished run is not retrained),
`results.json` (every number, mean and std over seeds) and `gallery.png` (the same test
images, GAP left and Hide-and-Seek right: body boxes green, head boxes blue,
predicted box red).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import numpy as np

from keras_has import config as config_lib
from keras_has.util.files import atomic_write_json, jsonable

__all__ = ["ARMS", "BenchmarkResult", "run_benchmark", "format_table"]

ARMS = ("gap", "has")
ARM_TITLES = {"gap": "GAP (baseline)", "has": "Hide-and-Seek"}
HEAD_COLOR = (0, 128, 255)
COLUMNS = (
    ("top1_cls", "Top-1 Clas"),
    ("gt_known_loc_body", "GT-known Loc (body)"),
    ("max_box_acc_v2_body", "MaxBoxAccV2 (body)"),
    ("gt_known_loc_head", "GT-known Loc (head)"),
    ("pxap", "PxAP"),
    ("train_minutes", "fine-tune min"),
)


@dataclasses.dataclass
class BenchmarkResult:
    """What `run_benchmark` returns.

    Attributes:
      runs: `{arm: {seed: {column key: value}}}` (`COLUMNS` keys and more).
      summary: `{arm: {key: (mean, std)}}` over seeds (population std).
      probe: the linear probe's `keras_has.experiments.probe.ProbeResult.to_dict()`, or None.
      table: the printed table (str).
      results_path, gallery_path: what was written (gallery None if not drawn).
    """

    runs: dict
    summary: dict
    probe: dict | None
    table: str
    results_path: str
    gallery_path: str | None


def _arm_config(base, arm: str, seed: int, output_dir: str):
    hiding = base.hiding if arm == "has" else config_lib.HidingConfig(grid_sizes=(),
                                                                       hide_prob=0.0)
    return dataclasses.replace(
        base, hiding=hiding, seed=seed, eval_every=0, best_metric="",
        data=dataclasses.replace(base.data, eval_split=None),
        output_dir=os.path.join(output_dir, f"{arm}_seed{seed}"))


def _timed_train(cfg):
    """Trains (or resumes) `cfg`; returns `(result, fine-tuning seconds)`.

    The time of a run that finished in an earlier call is read from its
    `benchmark_timing.json`; a resumed run reports the time of this call's epochs plus
    the earlier recorded part when known.
    """
    from keras_has.train.trainer import train

    timing_path = os.path.join(cfg.output_dir, "benchmark_timing.json")
    earlier = 0.0
    if os.path.isfile(timing_path):
        with open(timing_path, encoding="utf-8") as f:
            earlier = float(json.load(f).get("train_seconds", 0.0))
    start = time.perf_counter()
    result = train(cfg)
    seconds = earlier + (time.perf_counter() - start if result.epochs_run else 0.0)
    atomic_write_json(timing_path, {"train_seconds": seconds,
                                    "epochs_logged": len(result.history.get("epoch", []))})
    return result, seconds


def _check_splits(source, splits: dict) -> None:
    known = tuple(source.splits)
    for flag, split in splits.items():
        if split and split not in known:
            raise ValueError(f"{flag}: expected one of the splits {list(known)} of "
                             f"{source.name!r}, received {split!r}")


def summarize(runs: dict) -> dict:
    """Mean and population std over seeds of every numeric entry, per arm."""
    out = {}
    for arm, by_seed in runs.items():
        rows = list(by_seed.values())
        keys = [k for k, v in rows[0].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out[arm] = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows])))
                    for k in keys}
    return out


def format_table(summary: dict, num_seeds: int, probe: dict | None = None) -> str:
    """Markdown table: one row per arm, mean ± std over seeds."""
    head = "| Method | " + " | ".join(t for _, t in COLUMNS) + " |"
    sep = "| --- | " + " | ".join("---:" for _ in COLUMNS) + " |"
    lines = [head, sep]
    for arm in ARMS:
        if arm not in summary:
            continue
        cells = []
        for key, _ in COLUMNS:
            mean, std = summary[arm].get(key, (math.nan, math.nan))
            cells.append("-" if not math.isfinite(mean) else f"{mean:.2f} ± {std:.2f}")
        lines.append(f"| {ARM_TITLES[arm]} | " + " | ".join(cells) + " |")
    note = (f"(percent except minutes; mean ± std over {num_seeds} seed"
            f"{'s' if num_seeds > 1 else ''}; Loc at IoU >= 0.5)")
    if probe is not None:
        note += (f"\nLinear probe (frozen pretrained GAP features + logistic regression): "
                 f"Top-1 Clas {probe['top1_cls']:.2f}")
    return "\n".join(lines + [note])


def _draw_gallery(examples: dict, head_boxes, preprocessing, path: str, cols_pairs: int = 4):
    import cv2

    from keras_has.localize import visualize

    base = examples["gap"]
    images = preprocessing.to_pixels(base["image"])
    tiles = []
    for i in range(len(images)):
        for arm in ARMS:
            ex = examples[arm]
            body = np.asarray(ex["boxes"][i])[:int(ex["num_boxes"][i])]
            tile = visualize.overlay_cam(images[i], ex["cam"][i], body,
                                         np.asarray(ex["pred_box"][i]).reshape(-1, 4))
            if head_boxes is not None:
                for box in head_boxes[i]:
                    x0, y0, x1, y1 = (int(round(v)) for v in box)
                    cv2.rectangle(tile, (x0, y0), (x1, y1), HEAD_COLOR, 1)
            tiles.append(tile)
    visualize.save_png(path, visualize.make_grid(np.stack(tiles), cols=2 * cols_pairs))


def _head_boxes_for(examples_count: int, head_ds):
    boxes = []
    for batch in head_ds:
        for b, n in zip(np.asarray(batch["boxes"]), np.asarray(batch["num_boxes"])):
            boxes.append(b[:int(n)])
            if len(boxes) == examples_count:
                return boxes
    return boxes


def _same_images(source, split_a: str, split_b: str) -> bool:
    metadata = getattr(source, "split_metadata", None)
    if metadata is None:
        return False
    return tuple(metadata(split_a).image_ids) == tuple(metadata(split_b).image_ids)


def run_benchmark(base: config_lib.TrainConfig, *, output_dir: str, seeds=(0, 1, 2),
                  body_split: str = "test", head_split: str = "test_head",
                  mask_split: str = "test_mask", cam_threshold: float = 0.2,
                  gallery_size: int = 8, linear_probe: bool = True,
                  verbose: int = 1, arms=ARMS) -> BenchmarkResult:
    """Fine-tunes GAP and Hide-and-Seek arms of `base` per seed and scores them.

    Args:
      base: the Hide-and-Seek training config (its hiding must hide something; the
        baseline is the same config without hiding). Its `output_dir` and evaluation
        settings are ignored.
      output_dir: folder for the runs and the reports.
      seeds: one pair of runs per seed.
      body_split, head_split, mask_split: splits of `base`'s source with the object
        boxes, the part boxes and the masks of the test images ("" skips head / mask).
      cam_threshold: CAM threshold of GT-known / Top-1 Loc.
      gallery_size: test images in `gallery.png` (0: none).
      linear_probe: also fit the linear probe on the frozen pretrained features.
      arms: which of `ARMS` to run (e.g. only `("has",)` to try hiding settings against
        an earlier baseline; the gallery needs both).

    Returns:
      `BenchmarkResult`.
    """
    from keras_has import data, models
    from keras_has.experiments.comparison import check_arms_settings
    from keras_has.localize.evaluation import run_localization
    from keras_has.experiments.probe import linear_probe as fit_probe
    from keras_has.train.trainer import run_preprocessing, source_from_config

    arms = tuple(arms)
    if not arms or any(a not in ARMS for a in arms) or len(set(arms)) != len(arms):
        raise ValueError(f"arms: expected distinct names among {list(ARMS)}, received {list(arms)}")
    seeds = check_arms_settings(base, seeds, cam_threshold, "benchmark")
    source = source_from_config(base)
    _check_splits(source, {"body_split": body_split, "head_split": head_split,
                           "mask_split": mask_split})
    if not body_split:
        raise ValueError("body_split: expected the split with the object boxes, received none")
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    prep, _, _ = run_preprocessing(base, source)
    size = base.data.image_size
    batch = base.data.eval_batch_size or base.data.batch_size
    datasets = {"body": data.make_eval_dataset(source, size, batch, split=body_split,
                                               preprocessing=prep)}
    if head_split:
        datasets["head"] = data.make_eval_dataset(source, size, batch, split=head_split,
                                                  preprocessing=prep)
    if mask_split:
        datasets["mask"] = data.make_eval_dataset(source, size, batch, split=mask_split,
                                                  preprocessing=prep)

    probe = None
    if linear_probe:
        start = time.perf_counter()
        kwargs = dict(base.model_kwargs)
        kwargs.setdefault("seed", 0)
        pretrained = models.get_model(base.model, source.num_classes,
                                      input_shape=(size, size, 3), **kwargs)
        train_ds = data.make_eval_dataset(source, size, batch, split=base.data.train_split,
                                          preprocessing=prep)
        probe = fit_probe(pretrained, train_ds, datasets["body"], source.num_classes).to_dict()
        probe["seconds"] = time.perf_counter() - start
        logging.info("benchmark: linear probe Top-1 %.2f", probe["top1_cls"])
        del pretrained

    runs = {arm: {} for arm in arms}
    examples = {}
    for seed in seeds:
        for arm in arms:
            cfg = _arm_config(base, arm, seed, output_dir)
            logging.info("benchmark: fine-tuning %s (seed %d) in %s", arm, seed, cfg.output_dir)
            result, seconds = _timed_train(cfg)
            keep = gallery_size if seed == seeds[0] else 0
            body = run_localization(result.model, datasets["body"], cam_threshold=cam_threshold,
                                    num_examples=keep, verbose=verbose)
            row = {"top1_cls": body.metrics["top1_cls"],
                   "gt_known_loc_body": body.metrics["gt_known_loc"],
                   "top1_loc_body": body.metrics["top1_loc"],
                   "max_box_acc_v2_body": body.metrics["max_box_acc_v2"],
                   "train_minutes": seconds / 60.0,
                   "epochs": len(result.history.get("epoch", []))}
            if "head" in datasets:
                head = run_localization(result.model, datasets["head"],
                                        cam_threshold=cam_threshold, verbose=verbose).metrics
                row.update(gt_known_loc_head=head["gt_known_loc"],
                           max_box_acc_v2_head=head["max_box_acc_v2"])
            if "mask" in datasets:
                mask = run_localization(result.model, datasets["mask"],
                                        cam_threshold=cam_threshold, verbose=verbose).metrics
                row["pxap"] = mask.get("pxap", math.nan)
            runs[arm][seed] = row
            if keep and body.examples is not None:
                examples[arm] = body.examples
            logging.info("benchmark: %s seed %d: %s", arm, seed, row)

    summary = summarize(runs)
    table = format_table(summary, len(seeds), probe)
    gallery_path = None
    if set(examples) == set(ARMS):
        head_boxes = None
        if "head" in datasets and _same_images(source, body_split, head_split):
            head_boxes = _head_boxes_for(len(examples["gap"]["image"]), datasets["head"])
        gallery_path = os.path.join(output_dir, "gallery.png")
        _draw_gallery(examples, head_boxes, prep, gallery_path)
    results_path = os.path.join(output_dir, "results.json")
    atomic_write_json(results_path, jsonable({
        "seeds": list(seeds), "cam_threshold": cam_threshold,
        "splits": {"body": body_split, "head": head_split, "mask": mask_split},
        "config": base.to_dict(), "preprocessing": prep.to_json(), "linear_probe": probe,
        "runs": runs, "summary": summary, "table": table,
    }))
    return BenchmarkResult(runs=runs, summary=summary, probe=probe, table=table,
                           results_path=results_path, gallery_path=gallery_path)
