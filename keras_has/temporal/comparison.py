"""Temporal comparison: baseline vs Hide-and-Seek in time, per seed, as the paper's Table 5.

`run_temporal_comparison(config, output_dir, seeds)` trains, for every seed, the
temporal GAP baseline (no hiding) and temporal Hide-and-Seek (`config`'s
`segment_lengths` and `hide_prob`), otherwise identical; evaluates both on
`config.eval_split`; and writes under `output_dir`:

```
baseline_seed<S>/, has_seed<S>/   run folders (resumable) with metrics.json
results.json                      every run's metrics, mean/std per arm, the table, timings
timeline.png                      ground truth, both arms' CAMs and detections (first seed)
```
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from keras_has.util.files import atomic_write_json, jsonable
from keras_has.config.temporal import TemporalConfig

__all__ = ["ARMS", "ARM_LABELS", "run_temporal_comparison", "summarize", "format_table",
           "TemporalComparisonResult"]

ARMS = ("baseline", "has")
ARM_LABELS = {"baseline": "Video GAP (baseline)", "has": "Video Hide-and-Seek"}


@dataclasses.dataclass
class TemporalComparisonResult:
    """`runs[arm][seed]` = metrics dict; `summary[arm]` = mean/std; the printed table."""

    runs: dict
    summary: dict
    table: str
    results_path: str
    timeline_path: str | None
    wall_seconds: float


def _stats(values):
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)),
            "std": float(np.std(values)) if len(values) > 1 else 0.0,
            "values": values}


def summarize(runs):
    """Mean, population std and per-seed values of every metric, per arm.

    `runs[arm][seed]` holds `{"map": {tiou: value}, "classification_map": ..., ...}`.
    Returns `{arm: {"map": {tiou: stats}, "classification_map": stats, "accuracy": stats}}`.
    """
    summary = {}
    for arm, by_seed in runs.items():
        seeds = sorted(by_seed)
        if not seeds:
            continue
        tious = sorted(by_seed[seeds[0]]["map"])
        summary[arm] = {
            "map": {t: _stats([by_seed[s]["map"][t] for s in seeds]) for t in tious},
            "classification_map": _stats([by_seed[s]["classification_map"] for s in seeds]),
            "accuracy": _stats([by_seed[s]["accuracy"] for s in seeds]),
        }
    return summary


def format_table(summary, num_seeds):
    """A Markdown table in the form of the paper's Table 5 (mAP at each tIoU)."""
    arms = [a for a in ARMS if a in summary]
    tious = sorted(summary[arms[0]]["map"])
    fmt = (lambda s: f"{s['mean']:.2f} ± {s['std']:.2f}") if num_seeds > 1 else (
        lambda s: f"{s['mean']:.2f}")
    head = ("| Method | " + " | ".join(f"mAP@{t:g}" for t in tious) + " | Clas mAP |")
    rule = "| --- |" + " ---: |" * (len(tious) + 1)
    rows = [head, rule]
    for arm in arms:
        cells = [fmt(summary[arm]["map"][t]) for t in tious]
        cells.append(fmt(summary[arm]["classification_map"]))
        rows.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    over = f"mean ± std over {num_seeds} seeds" if num_seeds > 1 else "1 seed"
    note = f"(percent; {over})"
    return "\n".join(rows) + "\n" + note


def run_temporal_comparison(config: TemporalConfig, output_dir: str, seeds=(0,),
                            figure_videos: int = 4, source=None, log=print):
    """Trains and evaluates both arms for every seed; writes results.json and timeline.png.

    Args:
      config: the Hide-and-Seek arm's config (its `output_dir` and `seed` are replaced per
        run; the baseline is the same config without hiding).
      output_dir: where the runs and results go (rerunning resumes).
      seeds: distinct seeds (>= 0).
      figure_videos: evaluation videos drawn in timeline.png (0: no figure).
      source: optional `TemporalSource` already loaded.
      log: a print-like function for progress lines (None: silent).
    """
    from keras_has.temporal.evaluation import evaluate_temporal
    from keras_has.temporal.figure import write_timeline
    from keras_has.temporal.training import load_source, train_temporal

    start = time.perf_counter()
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds: expected distinct integers >= 0, received {list(seeds)}")
    if not config.hiding_enabled:
        raise ValueError("segment_lengths/hide_prob: the Hide-and-Seek arm must hide "
                         f"something, received segment_lengths={list(config.segment_lengths)} "
                         f"hide_prob={config.hide_prob}")
    if config.eval_split is None:
        raise ValueError("eval_split: the comparison evaluates on a split; received none")
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    source = source if source is not None else load_source(config)
    videos = source.split(config.eval_split)
    log = log or (lambda *a, **k: None)

    runs = {arm: {} for arm in ARMS}
    figure_arms = []
    timings = {}
    for seed in seeds:
        for arm in ARMS:
            cfg = dataclasses.replace(
                config, output_dir=os.path.join(output_dir, f"{arm}_seed{seed}"), seed=seed,
                segment_lengths=config.segment_lengths if arm == "has" else ())
            t0 = time.perf_counter()
            result = train_temporal(cfg, source=source)
            t1 = time.perf_counter()
            keep = figure_videos if seed == seeds[0] else 0
            ev = evaluate_temporal(result.model, videos, source.class_names,
                                   cam_threshold=cfg.cam_threshold,
                                   class_threshold=cfg.class_threshold,
                                   tiou_thresholds=cfg.tiou_thresholds, keep_cams=keep)
            t2 = time.perf_counter()
            timings[f"{arm}_seed{seed}"] = {"train_s": t1 - t0, "eval_s": t2 - t1,
                                            "epochs_run": len(result.epochs_run)}
            runs[arm][seed] = ev.metrics
            atomic_write_json(os.path.join(cfg.output_dir, "metrics.json"), jsonable(ev.metrics))
            if keep:
                figure_arms.append((ARM_LABELS[arm].split(" (")[0], ev.cams, ev.detections))
            maps = " ".join(f"{ev.metrics['map'][t]:.1f}" for t in cfg.tiou_thresholds)
            log(f"compare_temporal: {arm} seed {seed}: mAP@{list(cfg.tiou_thresholds)} = {maps}; "
                f"clas mAP {ev.metrics['classification_map']:.2f}; train {t1 - t0:.1f} s")

    summary = summarize(runs)
    table = format_table(summary, len(seeds))
    timeline_path = None
    if figure_videos and figure_arms:
        timeline_path = write_timeline(os.path.join(output_dir, "timeline.png"),
                                       videos[:figure_videos], figure_arms,
                                       source.class_names, config.cam_threshold)
    wall = time.perf_counter() - start
    results_path = os.path.join(output_dir, "results.json")
    atomic_write_json(results_path, jsonable({
        "seeds": list(seeds), "eval_split": config.eval_split, "source": source.name,
        "config": config.to_dict(), "runs": runs, "summary": summary, "table": table,
        "timings": timings, "wall_seconds": wall,
    }))
    return TemporalComparisonResult(runs=runs, summary=summary, table=table,
                                    results_path=results_path, timeline_path=timeline_path,
                                    wall_seconds=wall)


def load_results(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
