"""Fine-tuning benchmark on real photos: GAP vs Hide-and-Seek from a pretrained backbone.

`run_benchmark(base, ...)` is the library side of `scripts/benchmark_finetune.py`, a
configuration of the experiment loop `keras_has.experiments.runner`. For every seed it
fine-tunes the arms of `base` that differ only in hiding (`cam`, the GAP baseline, and
`has`, Hide-and-Seek; `gap` is accepted for `cam`), timing each, and scores them on a
WSOL folder with several ground truths for the same test images (pets3: whole-body boxes
in `test`, head boxes in `test_head`, masks in `test_mask`):

- Top-1 Clas, GT-known Loc, Top-1 Loc and MaxBoxAccV2 against the object (body) boxes;
- GT-known Loc against the part (head) boxes: a CAM that boxes only the head scores high
  there and low on the body;
- PxAP against the masks;
- the linear probe's Top-1 (frozen pretrained features, `keras_has.experiments.probe`), once.

Training runs without an evaluation split (the evaluation happens once, after training,
on all three ground truths), so the measured wall time is the fine-tuning alone. It
writes under `output_dir`: the runs (`gap_seed<k>/` for the baseline, the folder name
of the earlier benchmark, kept so that its finished runs are reused, and
`has_seed<k>/`; each with `train_time.json`), `results.json` (every number, mean and
std over seeds), `gallery.png` (the same test images under every arm: body boxes green,
head boxes blue, predicted box red) and `iou.png` (per-image IoU of both arms).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os

from keras_has import config as config_lib
from keras_has.config.experiments import BENCHMARK_ARMS, resolve_arms
from keras_has.experiments import report, runner

__all__ = ["ARMS", "COLUMNS", "BenchmarkResult", "run_benchmark", "benchmark_config"]

ARMS = BENCHMARK_ARMS
# Run folders per arm (a format string of the seed).
FOLDERS = {"cam": "gap_seed{seed}", "has": "has_seed{seed}"}
COLUMNS = (
    report.Column("Top-1 Clas", ("top1_cls",)),
    report.Column("GT-known Loc (body)", ("gt_known_loc_body",)),
    report.Column("MaxBoxAccV2 (body)", ("max_box_acc_v2_body",)),
    report.Column("GT-known Loc (head)", ("gt_known_loc_head",), optional=True),
    report.Column("PxAP", ("pxap",), optional=True),
    report.Column("fine-tune min", ("train_minutes",)),
)


@dataclasses.dataclass
class BenchmarkResult:
    """What `run_benchmark` returns.

    Attributes:
      runs: `{arm: {seed: {column key: value}}}` (`COLUMNS` keys and more).
      summary: `{arm: {key: (mean, std)}}` over seeds (population std).
      probe: the linear probe's `keras_has.experiments.probe.ProbeResult.to_dict()`, or None.
      table: the printed table (str, Markdown).
      results_path, gallery_path: what was written (gallery None if not drawn).
    """

    runs: dict
    summary: dict
    probe: dict | None
    table: str
    results_path: str
    gallery_path: str | None


def benchmark_config(base: config_lib.TrainConfig, arm: str, seed: int,
                     run_dir: str) -> config_lib.TrainConfig:
    """The run of `arm` for `seed` in `run_dir`: `base` with hiding only for `has`, and
    no evaluation during training."""
    hiding = base.hiding if arm == "has" else config_lib.HidingConfig(grid_sizes=(),
                                                                       hide_prob=0.0)
    return dataclasses.replace(
        base, hiding=hiding, seed=seed, eval_every=0, best_metric="",
        data=dataclasses.replace(base.data, eval_split=None), output_dir=run_dir)


def _check_splits(source, splits: dict) -> None:
    known = tuple(source.splits)
    for flag, split in splits.items():
        if split and split not in known:
            raise ValueError(f"{flag}: expected one of the splits {list(known)} of "
                             f"{source.name!r}, received {split!r}")


def _record(outcome: runner.RunOutcome) -> dict:
    """A run's row: body figures, head figures and PxAP where measured, minutes."""
    metrics = outcome.metrics
    body = metrics["body"]
    seconds = outcome.timing["train_seconds"]
    row = {"top1_cls": body["top1_cls"], "gt_known_loc_body": body["gt_known_loc"],
           "top1_loc_body": body["top1_loc"], "max_box_acc_v2_body": body["max_box_acc_v2"],
           "train_minutes": None if seconds is None else seconds / 60.0,
           "epochs": outcome.epochs}
    if "head" in metrics:
        row.update(gt_known_loc_head=metrics["head"]["gt_known_loc"],
                   max_box_acc_v2_head=metrics["head"]["max_box_acc_v2"])
    if "mask" in metrics:
        row["pxap"] = metrics["mask"].get("pxap", math.nan)
    return row


def run_benchmark(base: config_lib.TrainConfig, *, output_dir: str, seeds=(0, 1, 2),
                  body_split: str = "test", head_split: str | None = "test_head",
                  mask_split: str | None = "test_mask", cam_threshold: float = 0.2,
                  gallery_size: int = 8, linear_probe: bool = True,
                  verbose: int = 1, arms=ARMS) -> BenchmarkResult:
    """Fine-tunes GAP and Hide-and-Seek arms of `base` per seed and scores them.

    Args:
      base: the Hide-and-Seek training config (its hiding must hide something when
        `has` runs; the baseline is the same config without hiding). Its `output_dir`
        and evaluation settings are ignored.
      output_dir: folder for the runs and the reports.
      seeds: one run per arm per seed.
      body_split, head_split, mask_split: splits of `base`'s source with the object
        boxes, the part boxes and the masks of the test images ("" or None skips head /
        mask).
      cam_threshold: CAM threshold of GT-known / Top-1 Loc.
      gallery_size: test images in `gallery.png` (0: none).
      linear_probe: also fit the linear probe on the frozen pretrained features.
      verbose: 0 silent; 1 progress bars; 2 one line per epoch; with 1 or 2 a line per
        run before and after it.
      arms: which of `ARMS` to run, in table order (`gap` is accepted for `cam`; e.g.
        only `("has",)` to try hiding settings against an earlier baseline).

    Returns:
      `BenchmarkResult`.
    """
    from keras_has.experiments.comparison import check_arms_settings
    from keras_has.experiments.figures import part_boxes_of, write_figures
    from keras_has.experiments.probe import probe_pretrained, probe_table_row
    from keras_has.train.trainer import run_preprocessing, source_from_config

    arms = resolve_arms(arms, ARMS)
    seeds = check_arms_settings(base, seeds, cam_threshold, "benchmark", arms)
    source = source_from_config(base)
    _check_splits(source, {"body_split": body_split, "head_split": head_split,
                           "mask_split": mask_split})
    if not body_split:
        raise ValueError("body_split: expected the split with the object boxes, received none")
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    titles = {arm: runner.arm_title(arm) for arm in arms}
    experiment = runner.Experiment(
        arms=tuple(runner.Arm(arm, titles[arm], functools.partial(benchmark_config, base, arm),
                              folder=FOLDERS[arm]) for arm in arms),
        seeds=seeds, record=_record, columns=COLUMNS, cam_threshold=cam_threshold,
        gallery_size=gallery_size, units="percent except minutes")
    experiment.plan(output_dir)  # every run's config is checked before the data is read

    prep, _, _ = run_preprocessing(base, source)
    targets = [runner.eval_target("body", source, body_split, base, prep, examples=True)]
    if head_split:
        targets.append(runner.eval_target("head", source, head_split, base, prep,
                                          examples=True,
                                          show=(("gt_known_loc", "GT-known Loc"),)))
    if mask_split:
        targets.append(runner.eval_target("mask", source, mask_split, base, prep,
                                          show=(("pxap", "PxAP"),)))
    probe = None
    if linear_probe:
        probe = probe_pretrained(base, source, prep, targets[0].dataset)
        experiment = dataclasses.replace(experiment, extra_rows=(probe_table_row(probe),))

    result = runner.run_experiment(experiment, targets, output_dir=output_dir,
                                   verbose=verbose)
    gallery_path = None
    if all("body" in result.examples.get(arm, {}) for arm in arms):
        examples = {arm: result.examples[arm]["body"] for arm in arms}
        gallery_path, _ = write_figures(
            examples, {arm: result.ious[arm]["body"] for arm in arms},
            {arm: titles[arm].split(" (")[0] for arm in arms}, prep, output_dir,
            part_boxes=part_boxes_of(examples[arms[0]],
                                     result.examples[arms[0]].get("head")))
    results_path = report.write_results(os.path.join(output_dir, "results.json"),
                                        result.payload(
        splits={"body": body_split, "head": head_split or "", "mask": mask_split or ""},
        arms=list(arms), config=base.to_dict(), preprocessing=prep.to_json(),
        linear_probe=probe))
    return BenchmarkResult(runs=result.runs, summary=result.summary, probe=probe,
                           table=result.table, results_path=results_path,
                           gallery_path=gallery_path)
