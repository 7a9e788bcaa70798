"""Hyperparameter search of one WSOL method, judged on boxes kept apart from the test split.

Choe et al. (CVPR 2020) showed that WSOL rankings flip when each method's
hyperparameters are chosen on the test boxes. `run_tuning` trains one run per trial
(a point of the method's search space and a learning rate), scores each on the
*tuning split* (the built-in dataset's `validation` split, a WSOL folder's `val`
split; never the evaluation split) by MaxBoxAccV2, and writes under `output_dir`:

- `plan.json`: the trials (fixed by the space and the seed; a rerun must match it);
- `trial_NNN/`: each trial's training run (resumable like any run);
- `trials.csv`: one row per finished trial (parameters, MaxBoxAccV2, GT-known Loc,
  Top-1 Clas, training seconds), rewritten atomically after each trial;
- `best.cfg`: a flagfile of the chosen values (`--method=...`, the method's flags,
  `--lr_values=...`), to pass after the flagfile the search started from.

Killed and run again with the same arguments, it skips the finished trials and
resumes the interrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import os
import random
import time

from keras_has import config as config_lib
from keras_has.util.files import atomic_path, atomic_write_json

__all__ = ["DEFAULT_SPACES", "TuningResult", "default_space", "check_space", "plan_trials", "tuning_split",
           "trial_config", "run_tuning", "flagfile_lines"]

# Candidate values per method (wsolevaluation's default is always among them).
DEFAULT_SPACES = {
    "cam": {},
    "has": {"hide_prob": (0.25, 0.33, 0.5, 0.66)},
    "acol": {"acol_threshold": (0.5, 0.6, 0.7, 0.8, 0.9)},
    "spg": {"spg_threshold_1h": (0.5, 0.6, 0.7, 0.8), "spg_threshold_1l": (0.01, 0.05, 0.1)},
    "adl": {"adl_threshold": (0.7, 0.8, 0.9, 0.95), "adl_drop_rate": (0.25, 0.5, 0.75)},
    "cutmix": {"cutmix_prob": (0.25, 0.5, 1.0), "cutmix_beta": (0.5, 1.0, 2.0)},
}
METRIC = "max_box_acc_v2"


@dataclasses.dataclass
class TuningResult:
    """What `run_tuning` returns: every finished trial's row, the best one, paths."""

    rows: list
    best: dict
    csv_path: str
    flagfile_path: str


def default_space(method: str) -> dict:
    """The default candidate values of `method`'s hyperparameters."""
    from keras_has import methods

    methods.get_method(method)  # unknown names fail here
    return {k: tuple(v) for k, v in DEFAULT_SPACES.get(method, {}).items()}


def check_space(space: dict, method: str) -> dict:
    """`space` with tuple values; ValueError for a name that is no hyperparameter
    (MethodConfig field, `hide_prob`, `lr`) or for no candidate values."""
    fields = {f.name for f in dataclasses.fields(config_lib.MethodConfig)} - {"method"}
    allowed = fields | {"hide_prob", "lr"}
    out = {}
    for key, values in space.items():
        if key not in allowed:
            raise ValueError(f"space: {key!r} is not a hyperparameter; expected names among "
                             f"{sorted(allowed)}")
        values = tuple(values)
        if not values:
            raise ValueError(f"space: {key!r} has no candidate values")
        out[key] = values
    return out


def plan_trials(space: dict, trials: int | None, seed: int = 0) -> list[dict]:
    """The trials: the full grid of `space` when `trials` is None or at least its size,
    else `trials` grid points drawn without replacement with `random.Random(seed)`
    (the same points for the same arguments), in grid order."""
    keys = sorted(space)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if trials is None or trials >= len(grid):
        return grid
    if trials < 1:
        raise ValueError(f"trials: expected an integer >= 1, received {trials}")
    picked = sorted(random.Random(seed).sample(range(len(grid)), trials))
    return [grid[i] for i in picked]


def tuning_split(source) -> str:
    """The split with boxes that `source` keeps apart from training and test:
    `validation` (built-in dataset) or `val` (WSOL folders); ValueError without one."""
    splits = tuple(getattr(source, "splits", ()) or ())
    for name in ("validation", "val"):
        if name in splits:
            return name
    raise ValueError(f"tune_split: the source has no split kept apart from test for tuning "
                     f"(expected 'validation' or 'val' among {list(splits)}); pass one")


def trial_config(base: config_lib.TrainConfig, method: str, params: dict, split: str,
                 output_dir: str) -> config_lib.TrainConfig:
    """`base` with the method, its trial values, the trial's learning rate (the whole
    schedule scaled so that its first value is `params["lr"]`) and the tuning split
    as evaluation split."""
    wsol = dataclasses.replace(base.wsol, method=method,
                               **{k: v for k, v in params.items()
                                  if k not in ("hide_prob", "lr")})
    hiding = base.hiding if method == "has" else config_lib.HidingConfig(grid_sizes=(),
                                                                         hide_prob=0.0)
    if "hide_prob" in params:
        hiding = dataclasses.replace(hiding, hide_prob=params["hide_prob"])
    optim = base.optim
    if "lr" in params:
        scale = float(params["lr"]) / optim.lr_values[0]
        optim = dataclasses.replace(optim, lr_values=tuple(v * scale for v in optim.lr_values))
    data = dataclasses.replace(base.data, eval_split=split)
    best_metric = base.best_metric
    return dataclasses.replace(base, wsol=wsol, hiding=hiding, optim=optim, data=data,
                               best_metric=best_metric, output_dir=output_dir)


def flagfile_lines(config: config_lib.TrainConfig, params: dict) -> list[str]:
    """Flag lines of a trial's chosen values (method, its values, learning rates; an
    empty `--grid_sizes=` for every method but `has`, so that the lines also apply after
    a flagfile with hiding settings)."""
    lines = [f"--method={config.wsol.method}"]
    if config.wsol.method != "has":
        lines.append("--grid_sizes=")  # only Hide-and-Seek hides patches
    for key in sorted(params):
        if key == "lr":
            lines.append("--lr_values=" + ",".join(repr(v) for v in config.optim.lr_values))
        elif key == "hide_prob":
            lines.append(f"--hide_prob={config.hiding.hide_prob!r}")
        else:
            value = getattr(config.wsol, key)
            value = ",".join(value) if isinstance(value, tuple) else repr(value)
            lines.append(f"--{key}={value}")
    return lines


_COLUMNS = ("trial", "params", "max_box_acc_v2", "gt_known_loc", "top1_loc", "top1_cls",
            "train_seconds")


def _read_rows(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(path: str, rows: list[dict], keys: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*_COLUMNS[:2], *keys, *_COLUMNS[2:]])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in writer.fieldnames})
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(buffer.getvalue())


def run_tuning(base: config_lib.TrainConfig, *, output_dir: str, method: str,
               space: dict | None = None, lrs=(), trials: int | None = None,
               seed: int = 0, split: str | None = None, cam_threshold: float = 0.2,
               verbose: int = 1) -> TuningResult:
    """Searches `method`'s hyperparameters (and learning rate) on the tuning split.

    Args:
      base: the training config (flags of the search's flagfile); its `output_dir` and
        `eval_split` are replaced per trial.
      output_dir: folder of the trials and reports.
      method: a name from `keras_has.methods.list_methods()`.
      space: `{hyperparameter: candidate values}` (MethodConfig field names,
        `hide_prob`, or `lr`); None: `DEFAULT_SPACES[method]`.
      lrs: candidate first learning rates (empty: the base schedule only).
      trials: how many grid points to train (None: all), drawn with `seed`.
      split: the tuning split (None: `tuning_split(source)`); the evaluation split of
        `base` is refused.
      cam_threshold: CAM threshold of GT-known / Top-1 Loc (MaxBoxAccV2 sweeps it).

    Returns:
      `TuningResult`; the best trial maximises MaxBoxAccV2 (first in plan order on ties).
    """
    from keras_has import data
    from keras_has.localize.evaluation import run_localization
    from keras_has.train.checks import check_method_names
    from keras_has.train.trainer import run_preprocessing, source_from_config, train

    check_method_names((method,), "tune_method")
    space = check_space(default_space(method) if space is None else dict(space), method)
    if lrs:
        space["lr"] = tuple(float(v) for v in lrs)
    if not space:
        raise ValueError(f"space: method {method!r} has no hyperparameters to search; give "
                         "learning rates (lrs / --tune_lrs)")
    source = source_from_config(base)
    split = split or tuning_split(source)
    if split == base.data.eval_split and split not in ("validation", "val"):
        raise ValueError(f"tune_split: {split!r} is the evaluation split; tuning on it is what "
                         "this search avoids (choose validation / val)")
    splits = tuple(getattr(source, "splits", ()) or ())
    if splits and split not in splits:
        raise ValueError(f"tune_split: expected one of {list(splits)}, received {split!r}")
    plan = plan_trials(space, trials, seed)
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    # Every trial's config is validated before the first one trains.
    configs = [trial_config(base, method, p, split, os.path.join(output_dir, f"trial_{i:03d}"))
               for i, p in enumerate(plan)]
    os.makedirs(output_dir, exist_ok=True)
    plan_path = os.path.join(output_dir, "plan.json")
    planned = {"method": method, "split": split, "trials": plan, "metric": METRIC}
    if os.path.isfile(plan_path):
        with open(plan_path, encoding="utf-8") as f:
            old = json.load(f)
        if json.loads(json.dumps(planned)) != old:
            raise ValueError(f"output_dir: {output_dir} holds a search with another plan "
                             f"({plan_path}); use another output_dir")
    else:
        atomic_write_json(plan_path, planned)

    prep, _, _ = run_preprocessing(base, source)
    eval_ds = data.make_eval_dataset(source, base.data.image_size,
                                     base.data.eval_batch_size or base.data.batch_size,
                                     split=split, preprocessing=prep)
    csv_path = os.path.join(output_dir, "trials.csv")
    keys = sorted(space)
    rows = _read_rows(csv_path)
    done = {int(r["trial"]) for r in rows}
    for i, (params, cfg) in enumerate(zip(plan, configs)):
        if i in done:
            continue
        if verbose:
            print(f"trial {i + 1}/{len(plan)}: {method} {params}", flush=True)
        started = time.perf_counter()
        result = train(dataclasses.replace(cfg, verbose=verbose))
        seconds = time.perf_counter() - started
        metrics = run_localization(result.model, eval_ds, cam_threshold=cam_threshold,
                                   verbose=0).metrics
        row = {"trial": i, "params": json.dumps(params, sort_keys=True), **params,
               **{k: metrics[k] for k in ("max_box_acc_v2", "gt_known_loc", "top1_loc",
                                          "top1_cls")},
               "train_seconds": round(seconds, 1)}
        rows.append(row)
        rows.sort(key=lambda r: int(r["trial"]))
        _write_rows(csv_path, rows, keys)
        if verbose:
            print(f"  {split}: MaxBoxAccV2 {metrics['max_box_acc_v2']:.2f}, GT-known Loc "
                  f"{metrics['gt_known_loc']:.2f}, Top-1 Clas {metrics['top1_cls']:.2f}",
                  flush=True)
    best = max(rows, key=lambda r: (float(r[METRIC]), -int(r["trial"])))
    best_params = json.loads(best["params"])
    best_cfg = configs[int(best["trial"])]
    flagfile_path = os.path.join(output_dir, "best.cfg")
    header = [f"# scripts/tune.py: best of {len(rows)} trials of {method} by MaxBoxAccV2 "
              f"on the {split!r} split ({float(best[METRIC]):.2f}); pass after the search's "
              "flagfile."]
    with atomic_path(flagfile_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(header + flagfile_lines(best_cfg, best_params)) + "\n")
    return TuningResult(rows=rows, best=best, csv_path=csv_path, flagfile_path=flagfile_path)
