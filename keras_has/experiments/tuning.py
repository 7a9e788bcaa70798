"""Hyperparameter search of one WSOL method, judged on boxes kept apart from the test split.

Choe et al. (CVPR 2020) showed that WSOL rankings flip when each method's
hyperparameters are chosen on the test boxes. `run_tuning` is a configuration of the
experiment loop `keras_has.experiments.runner` whose arms are trials (a point of the
method's search space and a learning rate), one run each at the base config's seed,
scored on the *tuning split* (the built-in dataset's `validation` split, a WSOL folder's
`val` split; never the evaluation split) by MaxBoxAccV2. It writes under `output_dir`:

- `plan.json`: the trials (fixed by the space and the seed; a rerun must match it);
- `trial_NNN/`: each trial's training run (resumable like any run);
- `trials.csv`: one row per finished trial (parameters, MaxBoxAccV2, GT-known Loc,
  Top-1 Clas, training seconds), rewritten atomically after each trial;
- `best.cfg`: a flagfile of the chosen values (`--method=...`, the method's flags,
  `--lr_values=...`), to pass after the flagfile the search started from;
- `results.json`: every trial's record and the table of all trials.

Killed and run again with the same arguments, it skips the trials in trials.csv
(neither trained nor evaluated again) and resumes the interrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import itertools
import json
import os
import random

from keras_has import config as config_lib
from keras_has.experiments import report, runner
from keras_has.util.files import atomic_path, atomic_write_json

__all__ = ["DEFAULT_SPACES", "TuningResult", "default_space", "check_space", "plan_trials",
           "tuning_split", "trial_config", "run_tuning", "flagfile_lines", "TABLE_COLUMNS"]

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
# Hyperparameters outside MethodConfig: Hide-and-Seek's hiding and its schedule (method
# `has` only), the run's length, and the first learning rate (the schedule scaled).
HIDING_KEYS = ("hide_prob", "hide_from_epoch", "hide_until_epoch", "hide_anneal",
               "hide_share")
RUN_KEYS = ("epochs", "lr")


def _typed(key: str, value):
    """A candidate value (parsed as float from flags) in its config field's type."""
    if key == "hide_anneal":
        return bool(value)
    if value is None:  # hide_until_epoch's "to the end", already typed
        return None
    if key in ("hide_from_epoch", "hide_until_epoch", "epochs"):
        if float(value) != int(value):
            raise ValueError(f"space: {key!r} takes whole epochs, received {value!r}")
        value = int(value)
        return None if key == "hide_until_epoch" and value == 0 else value
    return value


@dataclasses.dataclass
class TuningResult:
    """What `run_tuning` returns.

    Attributes:
      rows: every finished trial's row (the columns of trials.csv), in trial order.
      best: the best row (highest MaxBoxAccV2, the first trial on ties).
      csv_path, flagfile_path, results_path: trials.csv, best.cfg, results.json.
      table: the Markdown table of all trials.
    """

    rows: list
    best: dict
    csv_path: str
    flagfile_path: str
    results_path: str = ""
    table: str = ""


def default_space(method: str) -> dict:
    """The default candidate values of `method`'s hyperparameters."""
    from keras_has import methods

    methods.get_method(method)  # unknown names fail here
    return {k: tuple(v) for k, v in DEFAULT_SPACES.get(method, {}).items()}


def check_space(space: dict, method: str) -> dict:
    """`space` with tuple values; ValueError for a name that is no hyperparameter
    (MethodConfig field, `HIDING_KEYS`, `RUN_KEYS`) or for no candidate values."""
    from keras_has import methods

    fields = {f.name for f in dataclasses.fields(config_lib.MethodConfig)} - {"method"}
    known = fields | set(HIDING_KEYS) | set(RUN_KEYS)
    used = set(methods.get_method(method).hyperparameters) | set(RUN_KEYS)
    if method == "has":
        used.update(HIDING_KEYS)
    out = {}
    for key, values in space.items():
        if key not in known:
            raise ValueError(f"space: {key!r} is not a hyperparameter; expected names among "
                             f"{sorted(known)}")
        if key not in used:
            raise ValueError(f"space: {key!r} is not a hyperparameter of method {method!r} (its "
                             f"trials would all be the same run); expected names among "
                             f"{sorted(used)}")
        values = tuple(_typed(key, v) for v in values)
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
    params = {k: _typed(k, v) for k, v in params.items()}
    wsol = dataclasses.replace(base.wsol, method=method,
                               **{k: v for k, v in params.items()
                                  if k not in HIDING_KEYS + RUN_KEYS})
    hiding = base.hiding if method == "has" else config_lib.HidingConfig(grid_sizes=(),
                                                                         hide_prob=0.0)
    hiding = dataclasses.replace(hiding, **{k: v for k, v in params.items()
                                            if k in HIDING_KEYS})
    if "epochs" in params:
        base = dataclasses.replace(base, epochs=params["epochs"])
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
        elif key in HIDING_KEYS:
            value = getattr(config.hiding, key)
            lines.append(f"--{key}=" + ("none" if value is None else repr(value)))
        elif key == "epochs":
            lines.append(f"--epochs={config.epochs}")
        else:
            value = getattr(config.wsol, key)
            value = ",".join(value) if isinstance(value, tuple) else repr(value)
            lines.append(f"--{key}={value}")
    return lines


_COLUMNS = ("trial", "params", "max_box_acc_v2", "gt_known_loc", "top1_loc", "top1_cls",
            "train_seconds")
TABLE_COLUMNS = (
    report.Column("MaxBoxAccV2", ("max_box_acc_v2",)),
    report.Column("GT-known Loc", ("gt_known_loc",)),
    report.Column("Top-1 Loc", ("top1_loc",)),
    report.Column("Top-1 Clas", ("top1_cls",)),
    report.Column("train s", ("train_seconds",)),
)


def _number(text: str):
    """A CSV cell as the number it was written from (int or float), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_rows(path: str) -> list[dict]:
    """trials.csv's rows, numbers parsed (the `params` JSON stays a string)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v if k == "params" else _number(v) for k, v in row.items()}
                for row in csv.DictReader(f)]


def _write_rows(path: str, rows: list[dict], keys: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*_COLUMNS[:2], *keys, *_COLUMNS[2:]])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in writer.fieldnames})
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(buffer.getvalue())


def _trial_run(base, method: str, params: dict, split: str, seed: int, run_dir: str):
    """`trial_config` of a trial in `run_dir` (`seed` is the base config's own)."""
    return trial_config(base, method, params, split, run_dir)


def _trial_title(index: int, params: dict) -> str:
    values = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
    return f"trial {index} ({values})"


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
        `HIDING_KEYS` for `has`, `epochs` or `lr`); None: `DEFAULT_SPACES[method]`.
      lrs: candidate first learning rates (empty: the base schedule only).
      trials: how many grid points to train (None: all), drawn with `seed`.
      seed: the seed of that draw (the trials train at `base.seed`).
      split: the tuning split (None: `tuning_split(source)`); the evaluation split of
        `base` is refused.
      cam_threshold: CAM threshold of GT-known / Top-1 Loc (MaxBoxAccV2 sweeps it).
      verbose: 0 silent; 1 progress bars; 2 one line per epoch; with 1 or 2 a line per
        trial before and after it.

    Returns:
      `TuningResult`; the best trial maximises MaxBoxAccV2 (first in plan order on ties).
    """
    from keras_has.train.checks import check_method_names
    from keras_has.train.trainer import run_preprocessing, source_from_config

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
    csv_path = os.path.join(output_dir, "trials.csv")
    keys = sorted(space)
    rows = _read_rows(csv_path)
    done = {int(r["trial"]): r for r in rows}

    names = [f"trial_{i:03d}" for i in range(len(plan))]
    index_of = {name: i for i, name in enumerate(names)}

    def record(outcome):
        index = index_of[outcome.arm.name]
        metrics = outcome.metrics["tuning"]
        seconds = outcome.timing["train_seconds"]
        return {"trial": index, "params": json.dumps(plan[index], sort_keys=True),
                **plan[index],
                **{k: metrics[k] for k in ("max_box_acc_v2", "gt_known_loc", "top1_loc",
                                           "top1_cls")},
                "train_seconds": None if seconds is None else round(seconds, 1)}

    def after_run(_, row):
        rows.append(row)
        rows.sort(key=lambda r: int(r["trial"]))
        _write_rows(csv_path, rows, keys)

    # A trial trains at the base config's seed, the experiment's only seed.
    arms = tuple(runner.Arm(name, _trial_title(i, params),
                            functools.partial(_trial_run, base, method, params, split),
                            folder=name)
                 for i, (name, params) in enumerate(zip(names, plan)))
    experiment = runner.Experiment(
        arms=arms, seeds=(base.seed,), record=record, columns=TABLE_COLUMNS,
        cam_threshold=cam_threshold,
        recorded=lambda arm, _seed: done.get(index_of[arm.name]),
        after_run=after_run, units=f"percent on the {split!r} split, training seconds",
        detail="")
    # Every trial's config is validated before the first one trains.
    experiment.plan(output_dir)
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
    target = runner.eval_target("tuning", source, split, base, prep,
                                show=(("max_box_acc_v2", "MaxBoxAccV2"),
                                      ("gt_known_loc", "GT-known Loc"),
                                      ("top1_cls", "Top-1 Clas")))
    result = runner.run_experiment(experiment, [target], output_dir=output_dir,
                                   verbose=verbose)
    best = max(rows, key=lambda r: (float(r[METRIC]), -int(r["trial"])))
    best_params = json.loads(best["params"])
    best_cfg = trial_config(base, method, plan[int(best["trial"])], split,
                            os.path.join(output_dir, names[int(best["trial"])]))
    flagfile_path = os.path.join(output_dir, "best.cfg")
    header = [f"# scripts/tune.py: best of {len(rows)} trials of {method} by MaxBoxAccV2 "
              f"on the {split!r} split ({float(best[METRIC]):.2f}); pass after the search's "
              "flagfile."]
    with atomic_path(flagfile_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(header + flagfile_lines(best_cfg, best_params)) + "\n")
    results_path = report.write_results(os.path.join(output_dir, "results.json"),
                                        result.payload(method=method, split=split,
                                                       metric=METRIC, best=best,
                                                       config=base.to_dict()))
    return TuningResult(rows=rows, best=best, csv_path=csv_path, flagfile_path=flagfile_path,
                        results_path=results_path, table=result.table)
