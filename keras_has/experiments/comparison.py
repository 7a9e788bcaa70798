"""WSOL methods side by side (default: GAP baseline vs Hide-and-Seek), reported as the
paper does.

`run_comparison` is the library side of `scripts/compare.py` (the project's main job),
a configuration of the experiment loop `keras_has.experiments.runner`: its arms are
methods (`keras_has.methods`; default `cam`, the GAP baseline, and `has`, Hide-and-Seek
with the hiding of the given config) whose runs differ only in the method; finished runs
are reused and an interrupted one resumes. Every run is evaluated on the evaluation
split (and the part boxes and masks below), and it writes under `output_dir`:

- `<method>_seed<k>/`: the training runs (checkpoints, logs, `model.keras`,
  `train_time.json` with the measured training seconds per epoch);
- the table (Markdown, `report.format_table`): the paper's Table 1 columns, PxAP and
  GT-known Loc against part boxes when measured, the training time per epoch relative
  to the first method's;
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
import functools
import math
import os

from keras_has import config as config_lib
from keras_has.experiments import report, runner
from keras_has.experiments.runner import ARM_TITLES, arm_title

__all__ = ["ARMS", "ARM_TITLES", "COLUMNS", "ComparisonResult", "run_comparison",
           "check_arms_settings", "check_methods", "arm_title", "comparison_config"]

ARMS = ("cam", "has")  # the default methods
# The paper's Table 1 (and the stricter MaxBoxAccV2 of Choe et al.), then what is measured
# where the data allows: PxAP (masks), GT-known Loc against the part boxes.
COLUMNS = (
    report.Column("Top-1 Clas", ("object", "top1_cls")),
    report.Column("GT-known Loc", ("object", "gt_known_loc")),
    report.Column("Top-1 Loc", ("object", "top1_loc")),
    report.Column("MaxBoxAccV2", ("object", "max_box_acc_v2")),
    report.Column("PxAP", ("object", "pxap"), optional=True),
    report.Column("GT-known Loc vs part", ("part", "gt_known_loc"), optional=True),
)


@dataclasses.dataclass
class ComparisonResult:
    """What `run_comparison` returns.

    Attributes:
      runs: `{arm: {seed: {"object": metrics, "part": metrics or None,
        "train_seconds_per_epoch": seconds or None}}}`.
      summary: `{arm: {"object": {key: (mean, std)}, "part": ..., ...}}` over seeds.
      table: the printed table (str, Markdown).
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


def comparison_config(base: config_lib.TrainConfig, method: str, seed: int,
                      run_dir: str) -> config_lib.TrainConfig:
    """The run of `method` for `seed` in `run_dir`: `base` with the method (its own
    hyperparameters from `base.wsol`) and hiding only for `has`."""
    hiding = base.hiding if method == "has" else config_lib.HidingConfig(grid_sizes=(),
                                                                          hide_prob=0.0)
    return dataclasses.replace(base, hiding=hiding, seed=seed,
                               wsol=dataclasses.replace(base.wsol, method=method),
                               output_dir=run_dir)


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


def _part_target(base: config_lib.TrainConfig, source, part_split: str | None):
    """(source, split) holding part boxes for the evaluation images, or None.

    `part_split` "auto": the synthetic source's part boxes, or the WSOL split
    `<eval_split>_head` when the folder has it; "" or None: none; else a split name of
    the training source.
    """
    if not part_split or base.data.eval_split is None:
        return None
    part_source = source.part_box_source()
    if part_source is not None:
        return part_source, base.data.eval_split
    split = _companion_split(source, base, part_split, "_head", "part_split")
    return None if split is None else (source, split)


def _mask_target(base: config_lib.TrainConfig, source, mask_split: str | None) -> str | None:
    """The split with masks of the evaluation images for PxAP, or None.

    `mask_split` "auto": the WSOL split `<eval_split>_mask` when the folder has it (pets3:
    `test_mask`); "" or None: none (PxAP only when the evaluation split has masks
    itself); else a split name of the training source.
    """
    if not mask_split or base.data.eval_split is None:
        return None
    return _companion_split(source, base, mask_split, "_mask", "mask_split")


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
    seeds = runner.check_seeds(seeds)
    runner.check_hiding(base, methods, what)
    if not 0.0 <= cam_threshold <= 1.0:
        raise ValueError(f"cam_threshold: expected a value in [0, 1], received {cam_threshold}")
    return seeds


def _record(outcome: runner.RunOutcome) -> dict:
    """A run's entry in `runs`: the object metrics (PxAP from the mask split when
    there is one), the part metrics, the training seconds per epoch."""
    metrics = outcome.metrics
    obj = dict(metrics["object"])
    if "mask" in metrics:
        obj["pxap"] = metrics["mask"].get("pxap", math.nan)
    return {"object": obj, "part": metrics.get("part"),
            "train_seconds_per_epoch": outcome.timing["seconds_per_epoch"]}


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
    from keras_has.experiments.figures import part_boxes_of, write_figures
    from keras_has.experiments.probe import probe_pretrained, probe_table_row
    from keras_has.train.trainer import run_preprocessing, source_from_config

    methods = check_methods(methods)
    seeds = check_arms_settings(base, seeds, cam_threshold, "comparison", methods)
    if base.data.eval_split is None:
        raise ValueError("eval_split: the comparison evaluates on a split; received none")
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    exported = "has" if "has" in methods else methods[-1]
    exports = []  # where the exported model went

    def after_run(outcome, _):
        if export and outcome.arm.name == exported and outcome.seed == seeds[0]:
            from keras_has.serve.export import export_saved_model

            export_dir = os.path.join(output_dir, "saved_model")
            export_saved_model(outcome.train.model, export_dir, image_size=base.data.image_size,
                               preprocessing=prep, class_names=list(source.class_names),
                               cam_threshold=cam_threshold,
                               config=outcome.config.to_dict(), overwrite=True)
            exports.append(export_dir)

    arms = tuple(runner.Arm(m, arm_title(m), functools.partial(comparison_config, base, m))
                 for m in methods)
    reference = arm_title(methods[0]).split(" (")[0]
    columns = COLUMNS + (report.Column(f"Train time/epoch vs {reference}",
                                       ("train_seconds_per_epoch",), relative=True),)
    experiment = runner.Experiment(
        arms=arms, seeds=seeds, record=_record, columns=columns,
        cam_threshold=cam_threshold, gallery_size=gallery_size, after_run=after_run,
        one_seed_hint="run --seeds=0,1,2 for one")
    experiment.plan(output_dir)  # every run's config is checked before the data is read

    source = source_from_config(base)
    part = _part_target(base, source, part_split)
    mask = _mask_target(base, source, mask_split)
    # The same preprocessing as training (the backbone's for pretrained weights).
    prep, _, _ = run_preprocessing(base, source)

    split = base.data.eval_split
    targets = [runner.eval_target("object", source, split, base, prep, examples=True)]
    if part is not None:
        targets.append(runner.eval_target(
            "part", part[0], part[1], base, prep, examples=True,
            label=f"{part[1]} (part boxes)" if part[1] == split else part[1],
            show=(("gt_known_loc", "GT-known Loc vs part"),)))
    if mask is not None:
        targets.append(runner.eval_target("mask", source, mask, base, prep,
                                          show=(("pxap", "PxAP"),)))
    probe = None
    if linear_probe or (linear_probe is None and base.model_kwargs.get("weights")):
        probe = probe_pretrained(base, source, prep, targets[0].dataset)
        experiment = dataclasses.replace(experiment, extra_rows=(probe_table_row(probe),))

    result = runner.run_experiment(experiment, targets, output_dir=output_dir,
                                   verbose=verbose)
    gallery_path = iou_path = None
    if all("object" in result.examples.get(m, {}) for m in methods):
        examples = {m: result.examples[m]["object"] for m in methods}
        gallery_path, iou_path = write_figures(
            examples, {m: result.ious[m]["object"] for m in methods},
            {m: arm_title(m).split(" (")[0] for m in methods}, prep, output_dir,
            part_boxes=part_boxes_of(examples[methods[0]],
                                     result.examples[methods[0]].get("part")))
    times = {m: (result.summary[m].get("train_seconds_per_epoch") or (None,))[0]
             for m in methods}
    results_path = report.write_results(os.path.join(output_dir, "results.json"),
                                        result.payload(
        eval_split=split, part_boxes=None if part is None else {"split": part[1]},
        mask_split=mask,
        gallery_image_ids=(list(result.examples[methods[0]]["object"]["image_id"])
                           if gallery_path else []),
        methods=list(methods), train_seconds_per_epoch=times, config=base.to_dict(),
        preprocessing=prep.to_json(), linear_probe=probe))
    return ComparisonResult(runs=result.runs, summary=result.summary, table=result.table,
                            results_path=results_path, gallery_path=gallery_path,
                            iou_path=iou_path, export_dir=exports[0] if exports else None)
