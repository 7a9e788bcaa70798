"""WSOL methods side by side (default: GAP baseline vs Hide-and-Seek), reported as the
paper does.

`run_comparison` is the library side of `scripts/compare.py` (the project's main job).
For every seed it trains one run per method (`keras_has.methods`; default `cam`, the
GAP baseline, and `has`, Hide-and-Seek with the hiding of the given config) that differ
only in the method, with `keras_has.train.trainer.train` (so an interrupted comparison
resumes run by run), evaluates each on the evaluation split with
`keras_has.localize.evaluation.run_localization`, and writes under `output_dir`:

- `<method>_seed<k>/`: the training runs (checkpoints, logs, `model.keras`,
  `train_time.json` with the measured training seconds per epoch);
- `results.json`: every run's metrics plus the mean and standard deviation over seeds;
- `gallery.png`: the same test images (the first `gallery_size` of the evaluation
  split) under every method (left to right, in the order given), each tile the
  true class's CAM with the object's box (green), the part's box (blue, when known) and
  the predicted box (red), captioned with its IoU (the paper's Figure 3);
- `iou.png` (two methods) or `iou_<method>.png` (more): every test image's IoU under
  the first method and each other one (scatter and histograms);
- `saved_model/`: the first seed's Hide-and-Seek model (else the last method's),
  exported for serving.

Where the data also has boxes of the most discriminative part (the built-in synthetic
data's `part_box`, or a WSOL split such as pets3's `test_head`), both models are also
scored against those part boxes: a CAM that boxes only the part scores high there and
low on the whole object. Where a WSOL folder keeps the masks of the evaluation images in
a split of their own (pets3's `test_mask`), PxAP is measured on it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np

from keras_has import config as config_lib
from keras_has.util.files import atomic_write_json, jsonable

__all__ = ["ARMS", "ComparisonResult", "run_comparison", "format_table", "summarize",
           "check_arms_settings", "check_methods", "arm_title"]

ARMS = ("cam", "has")  # the default methods (the GAP baseline was the arm "gap")
ARM_TITLES = {"cam": "GAP (baseline)", "has": "Hide-and-Seek"}


def arm_title(method: str) -> str:
    """Table and figure title of a method."""
    from keras_has import methods

    return ARM_TITLES.get(method) or methods.title_of(method)
# Columns of the paper's Table 1 (and the stricter MaxBoxAccV2 of Choe et al.).
TABLE_COLUMNS = (
    ("top1_cls", "Top-1 Clas"),
    ("gt_known_loc", "GT-known Loc"),
    ("top1_loc", "Top-1 Loc"),
    ("max_box_acc_v2", "MaxBoxAccV2"),
)
PART_COLUMNS = (("gt_known_loc", "GT-known Loc vs part"),)
OPTIONAL_COLUMNS = (("pxap", "PxAP"),)  # when the evaluation data has masks


@dataclasses.dataclass
class ComparisonResult:
    """What `run_comparison` returns.

    Attributes:
      runs: `{arm: {seed: {"object": metrics, "part": metrics or None}}}`.
      summary: `{arm: {"object": {key: (mean, std)}, "part": ...}}` over seeds.
      table: the printed table (str).
      results_path, gallery_path, iou_path, export_dir: what was written (None if not
        written).
    """

    runs: dict
    summary: dict
    table: str
    results_path: str
    gallery_path: str | None
    iou_path: str | None
    export_dir: str | None


def _arm_config(base: config_lib.TrainConfig, arm: str, seed: int, output_dir: str):
    """`base` for method `arm`: hiding only for `has`, the method's own hyperparameters
    from `base.wsol`."""
    hiding = base.hiding if arm == "has" else config_lib.HidingConfig(grid_sizes=(),
                                                                       hide_prob=0.0)
    return dataclasses.replace(base, hiding=hiding, seed=seed,
                               wsol=dataclasses.replace(base.wsol, method=arm),
                               output_dir=os.path.join(output_dir, f"{arm}_seed{seed}"))


def check_methods(methods_list) -> tuple[str, ...]:
    """The method names as a tuple; ValueError for none, unknown or repeated names."""
    from keras_has.train.checks import check_method_names

    names = tuple(str(m).strip() for m in methods_list if str(m).strip())
    if not names:
        raise ValueError("methods: expected at least one method, received none")
    check_method_names(names)
    if len(set(names)) != len(names):
        raise ValueError(f"methods: expected distinct methods, received {list(names)}")
    return names


def _part_target(base: config_lib.TrainConfig, part_split: str | None):
    """(source, split) holding part boxes for the evaluation images, or None.

    `part_split` "auto": the synthetic source's part boxes, or the WSOL split
    `<eval_split>_head` when the folder has it; "" or None: none; else a split name of
    the training source.
    """
    from keras_has.train.trainer import source_from_config

    if not part_split or base.data.eval_split is None:
        return None
    source = source_from_config(base)
    part_source = source.part_box_source()
    if part_source is not None:
        return part_source, base.data.eval_split
    split = _companion_split(source, base, part_split, "_head", "part_split")
    return None if split is None else (source, split)


def _mask_target(base: config_lib.TrainConfig, mask_split: str | None) -> str | None:
    """The split with masks of the evaluation images for PxAP, or None.

    `mask_split` "auto": the WSOL split `<eval_split>_mask` when the folder has it (pets3:
    `test_mask`); "" or None: none (PxAP only when the evaluation split has masks
    itself); else a split name of the training source.
    """
    from keras_has.train.trainer import source_from_config

    if not mask_split or base.data.eval_split is None:
        return None
    return _companion_split(source_from_config(base), base, mask_split, "_mask", "mask_split")


def _companion_split(source, base, name: str, suffix: str, flag: str) -> str | None:
    """`name`, or for "auto" `<eval_split><suffix>` when the source has it (else None);
    ValueError naming `flag` for an explicit name the source lacks."""
    splits = tuple(source.splits)
    split = f"{base.data.eval_split}{suffix}" if name == "auto" else name
    if split in splits:
        return split
    if name != "auto":
        raise ValueError(f"{flag}: expected one of the splits {list(splits)} "
                         f"of {base.data.source!r}, received {name!r}")
    return None


def check_arms_settings(base: config_lib.TrainConfig, seeds, cam_threshold: float,
                        what: str, methods=ARMS) -> tuple[int, ...]:
    """Checks what every comparison run needs; returns the seeds as ints.

    Raises ValueError naming `seeds` (none or repeated), `hiding` (nothing hidden) or
    `cam_threshold` (outside [0, 1]); `what` names the caller in the message.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed, received none")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct seeds, received {list(seeds)}")
    if "has" in methods and not base.hiding.enabled:
        raise ValueError(f"hiding: the {what} needs Hide-and-Seek settings "
                         f"(grid_sizes with a non-zero size and hide_prob > 0), received "
                         f"grid_sizes={list(base.hiding.grid_sizes)} "
                         f"hide_prob={base.hiding.hide_prob}")
    if not 0.0 <= cam_threshold <= 1.0:
        raise ValueError(f"cam_threshold: expected a value in [0, 1], received {cam_threshold}")
    return seeds


def summarize(runs: dict) -> dict:
    """Mean and population std over seeds of every numeric metric, per arm and target."""
    out = {}
    for arm, by_seed in runs.items():
        out[arm] = {}
        for target in ("object", "part"):
            per_seed = [r[target] for r in by_seed.values() if r.get(target)]
            if not per_seed:
                out[arm][target] = None
                continue
            keys = [k for k, v in per_seed[0].items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)]
            out[arm][target] = {
                k: (float(np.mean([m[k] for m in per_seed])),
                    float(np.std([m[k] for m in per_seed]))) for k in keys}
    return out


def _cell(stat, with_std: bool = True) -> str:
    if stat is None:
        return "-"
    mean, std = stat
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:6.2f} ± {std:4.2f}" if with_std else f"{mean:6.2f}"


def format_table(summary: dict, num_seeds: int, methods=None, times: dict | None = None) -> str:
    """The paper's Table 1 layout (percentages; mean ± std over seeds, or the single
    seed's value without a spread), one row per method in `methods` order (default:
    the summary's order); PxAP when measured; with `times` (`{method: seconds per
    epoch}`), the training time per epoch relative to the first method's."""
    methods = list(summary) if methods is None else [m for m in methods if m in summary]
    columns = [(("object", k), title) for k, title in TABLE_COLUMNS]
    columns += [(("object", k), title) for k, title in OPTIONAL_COLUMNS
                if any((summary[m].get("object") or {}).get(k) for m in methods)]
    if any(summary[arm].get("part") for arm in methods):
        columns += [(("part", k), title) for k, title in PART_COLUMNS]
    head = ["Method"] + [title for _, title in columns]
    reference = times.get(methods[0]) if times and methods else None
    if reference:
        head.append(f"Train time/epoch vs {arm_title(methods[0]).split(' (')[0]}")
    rows = []
    for arm in methods:
        row = [arm_title(arm)]
        for (target, key), _ in columns:
            stats = summary[arm].get(target)
            row.append(_cell(None if stats is None else stats.get(key), num_seeds > 1))
        if reference:
            row.append(f"{times[arm] / reference:.2f}x" if times.get(arm) else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: " | ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    sep = "-+-".join("-" * w for w in widths)
    spread = (f"mean ± std over {num_seeds} seeds" if num_seeds > 1
              else "1 seed: no spread measured, run --seeds=0,1,2 for one")
    note = f"(percent; {spread}; Loc at IoU >= 0.5)"
    return "\n".join([line(head), sep] + [line(r) for r in rows] + [note])


def _figures(examples: dict, ious: dict, preprocessing, output_dir: str, methods=ARMS,
             images_per_row: int | None = None) -> tuple[str, str | None]:
    """`gallery.png` (the same test images under every method, labelled, with part
    boxes when known) and the per-image IoU figures of the first method against each
    other one (`iou.png` for two methods, `iou_<method>.png` for more); returns the
    gallery's path and the first IoU figure's."""
    from keras_has.localize import visualize

    base = examples[methods[0]]
    for arm in methods[1:]:
        if list(base["image_id"]) != list(examples[arm]["image_id"]):
            raise RuntimeError("gallery: the methods' example images differ: "
                               f"{list(base['image_id'])} vs {list(examples[arm]['image_id'])}")
    images = preprocessing.to_pixels(base["image"])
    n = len(images)
    arms = [(arm_title(arm).split(" (")[0], examples[arm]["cam"], examples[arm]["pred_box"],
             ious[arm][:n]) for arm in methods]
    if images_per_row is None:
        images_per_row = 2 if len(methods) <= 2 else 1
    gallery = visualize.comparison_gallery(
        images, arms, base["boxes"], base["num_boxes"],
        part_boxes=examples.get("part_boxes"), images_per_row=images_per_row)
    gallery_path = os.path.join(output_dir, "gallery.png")
    visualize.save_png(gallery_path, gallery)
    iou_paths = []
    for i, arm in enumerate(methods[1:], start=1):
        name = "iou.png" if len(methods) == 2 else f"iou_{arm}.png"
        path = os.path.join(output_dir, name)
        visualize.save_png(path, visualize.iou_figure(
            [(arms[0][0], ious[methods[0]]), (arms[i][0], ious[arm])]))
        iou_paths.append(path)
    return gallery_path, (iou_paths[0] if iou_paths else None)


def run_comparison(base: config_lib.TrainConfig, *, output_dir: str, seeds=(0,),
                   cam_threshold: float = 0.2, part_split: str | None = "auto",
                   mask_split: str | None = "auto", gallery_size: int = 8, export: bool = True,
                   verbose: int = 1, linear_probe: bool | None = None,
                   methods=ARMS) -> ComparisonResult:
    """Trains and evaluates every method for each seed.

    Args:
      base: the training config; every method's run is it with `wsol.method` set to
        the method and hiding only for `has` (whose `hiding` must then hide something).
        Its `output_dir` is ignored.
      output_dir: folder for every method's runs and the reports.
      seeds: one run per method per seed.
      cam_threshold: CAM threshold (fraction of max) of GT-known / Top-1 Loc.
      part_split: where part boxes come from ("auto", "" for none, or a split name).
      mask_split: where the evaluation images' masks come from, for PxAP ("auto": the
        split `<eval_split>_mask` when present; "" for none; or a split name).
      gallery_size: test images in `gallery.png` (0: no gallery).
      export: export the first seed's Hide-and-Seek model (else the last method's) as
        `output_dir/saved_model`.
      verbose: 0 silent; 1 progress bars; 2 one line per epoch. With 1 or 2, a header
        per training run and a line of test figures after it.
      linear_probe: also report a linear classifier on the frozen pretrained features
        (`keras_has.experiments.probe`); None: whenever `base` loads pretrained weights.
      methods: names from `keras_has.methods.list_methods()`, in table order (the
        first is the reference of the relative training time).

    Returns:
      `ComparisonResult`.
    """
    from keras_has import data
    from keras_has.localize.evaluation import run_localization
    from keras_has.train.trainer import run_preprocessing, source_from_config, train

    from keras_has.util.console import fit_verbosity

    verbose = fit_verbosity(verbose)
    methods = check_methods(methods)
    seeds = check_arms_settings(base, seeds, cam_threshold, "comparison", methods)
    # Every method's config is checked before the first run trains.
    for arm in methods:
        _arm_config(base, arm, seeds[0], output_dir)
    exported = "has" if "has" in methods else methods[-1]
    if base.data.eval_split is None:
        raise ValueError("eval_split: the comparison evaluates on a split; received none")
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    part = _part_target(base, part_split)
    mask = _mask_target(base, mask_split)

    source = source_from_config(base)
    # The same preprocessing as training (the backbone's for pretrained weights).
    prep, _, _ = run_preprocessing(base, source)
    size = base.data.image_size
    eval_batch = base.data.eval_batch_size or base.data.batch_size
    eval_ds = data.make_eval_dataset(source, size, eval_batch, split=base.data.eval_split,
                                     preprocessing=prep)
    part_ds = None
    if part is not None:
        part_ds = data.make_eval_dataset(part[0], size, eval_batch, split=part[1],
                                         preprocessing=prep)
    mask_ds = None
    if mask is not None:
        mask_ds = data.make_eval_dataset(source, size, eval_batch, split=mask,
                                         preprocessing=prep)
    probe = None
    if linear_probe or (linear_probe is None and base.model_kwargs.get("weights")):
        probe = _linear_probe(base, source, prep, eval_ds)

    runs = {arm: {} for arm in methods}
    examples, ious = {}, {}
    export_dir = None
    eval_verbose = 1 if verbose == 1 else 0
    total = len(seeds) * len(methods)
    for k, (seed, arm) in enumerate((s, a) for s in seeds for a in methods):
        cfg = _arm_config(base, arm, seed, output_dir)
        if verbose:
            print(f"training {arm_title(arm)}, seed {seed}: {k + 1}/{total} "
                  f"({cfg.epochs} epochs, {cfg.output_dir})", flush=True)
        started = time.perf_counter()
        result = train(dataclasses.replace(cfg, verbose=verbose))
        seconds = _train_time_per_epoch(cfg.output_dir, result.epochs_run,
                                        time.perf_counter() - started)
        keep = gallery_size if seed == seeds[0] else 0
        obj = run_localization(result.model, eval_ds, cam_threshold=cam_threshold,
                               num_examples=keep, verbose=eval_verbose)
        part_metrics = None
        if part_ds is not None:
            part_result = run_localization(result.model, part_ds, cam_threshold=cam_threshold,
                                           num_examples=keep, verbose=eval_verbose)
            part_metrics = part_result.metrics
            if keep and part_result.examples is not None:
                examples["part_boxes"] = part_result.examples["boxes"]
        if mask_ds is not None:
            obj.metrics["pxap"] = run_localization(
                result.model, mask_ds, cam_threshold=cam_threshold,
                verbose=eval_verbose).metrics.get("pxap", math.nan)
        runs[arm][seed] = {"object": obj.metrics, "part": part_metrics,
                           "train_seconds_per_epoch": seconds}
        if verbose:
            line = (f"  test: Top-1 Clas {obj.metrics['top1_cls']:.2f}, GT-known Loc "
                    f"{obj.metrics['gt_known_loc']:.2f}, MaxBoxAccV2 "
                    f"{obj.metrics['max_box_acc_v2']:.2f}")
            if part_metrics is not None:
                line += f", GT-known Loc vs part {part_metrics['gt_known_loc']:.2f}"
            print(line, flush=True)
        if keep and obj.examples is not None:
            examples[arm] = obj.examples
            ious[arm] = obj.ious
        if export and arm == exported and seed == seeds[0]:
            from keras_has.serve.export import export_saved_model

            export_dir = os.path.join(output_dir, "saved_model")
            export_saved_model(result.model, export_dir, image_size=size,
                               preprocessing=prep, class_names=list(source.class_names),
                               cam_threshold=cam_threshold, config=cfg.to_dict(),
                               overwrite=True)

    summary = summarize(runs)
    times = {arm: _mean_time(by_seed) for arm, by_seed in runs.items()}
    table = format_table(summary, len(seeds), methods, times)
    if probe is not None:
        table += (f"\nLinear probe (frozen pretrained features, linear classifier): "
                  f"Top-1 Clas {probe['top1_cls']:.2f}")
    gallery_path = iou_path = None
    if set(methods) <= set(examples):
        gallery_path, iou_path = _figures(examples, ious, prep, output_dir, methods)
    results_path = os.path.join(output_dir, "results.json")
    atomic_write_json(results_path, jsonable({
        "seeds": list(seeds), "cam_threshold": cam_threshold,
        "eval_split": base.data.eval_split,
        "part_boxes": None if part is None else {"split": part[1]},
        "mask_split": mask,
        "gallery_image_ids": (list(examples[methods[0]]["image_id"]) if gallery_path else []),
        "methods": list(methods), "train_seconds_per_epoch": times,
        "config": base.to_dict(), "runs": runs, "summary": summary, "table": table,
        "preprocessing": prep.to_json(), "linear_probe": probe,
    }))
    return ComparisonResult(runs=runs, summary=summary, table=table,
                            results_path=results_path, gallery_path=gallery_path,
                            iou_path=iou_path, export_dir=export_dir)


def _train_time_per_epoch(run_dir: str, epochs_run, seconds: float) -> float | None:
    """Training seconds per epoch of a run: measured now when this call trained epochs
    (and recorded in `run_dir/train_time.json`), else the recorded value (None when
    the run finished before times were recorded)."""
    import json

    path = os.path.join(run_dir, "train_time.json")
    if epochs_run:
        value = seconds / len(epochs_run)
        atomic_write_json(path, {"seconds_per_epoch": value, "epochs_timed": len(epochs_run)})
        return value
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return float(json.load(f)["seconds_per_epoch"])
    return None


def _mean_time(by_seed: dict) -> float | None:
    values = [r.get("train_seconds_per_epoch") for r in by_seed.values()]
    values = [v for v in values if v]
    return float(np.mean(values)) if values else None


def _linear_probe(base, source, preprocessing, eval_ds) -> dict:
    """`keras_has.experiments.probe.linear_probe` of `base`'s model as built (pretrained, untrained head)."""
    from keras_has import data, models
    from keras_has.experiments.probe import linear_probe

    size = base.data.image_size
    kwargs = dict(base.model_kwargs)
    kwargs.setdefault("seed", 0)
    model = models.get_model(base.model, source.num_classes, input_shape=(size, size, 3),
                             **kwargs)
    train_ds = data.make_eval_dataset(source, size, base.data.eval_batch_size
                                      or base.data.batch_size, split=base.data.train_split,
                                      preprocessing=preprocessing)
    return linear_probe(model, train_ds, eval_ds, source.num_classes).to_dict()

