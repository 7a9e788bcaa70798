"""The experiment loop: arms x seeds -> training runs -> evaluation -> summary -> table.

`keras-has compare` (`keras_has.experiments.comparison`), the fine-tuning benchmark
(`keras_has.experiments.finetune_benchmark`) and `keras-has tune`
(`keras_has.experiments.tuning`) are configurations of this one loop: they say which
arms to train (`Arm`: a name, a title and the `TrainConfig` of its run for a seed), on
which splits to evaluate them (`Target`), what to keep of each run (`Experiment.record`)
and which figures the table shows (`keras_has.experiments.report.Column`).

`run_experiment(experiment, targets, output_dir=...)`, for every seed and every arm in
that order:

1. builds the run's config in its run folder `output_dir/<Arm.folder>`
   (`<arm>_seed<k>` unless the arm names another); all runs' configs are built, and so
   validated, before the first one trains (`Experiment.plan`);
2. reuses a run whose record is already known (`Experiment.recorded`, e.g. a trial in
   tune's trials.csv: neither trained nor evaluated again), or trains it with
   `keras_has.train.trainer.train`, which resumes an interrupted run and returns a
   finished one without training ("reusing GAP (baseline), seed 0: 1/2 (finished, ...)"
   on the console instead of "training ...");
3. records the training time in the run folder (`train_time.json`: seconds per epoch
   of the epochs this call trained, timed inside `fit` so that the first arm's start-up
   is not counted, and the run's total training seconds);
4. evaluates the model on every target with
   `keras_has.localize.evaluation.run_localization` (the first seed's first
   `gallery_size` images kept where the target asks for examples);
5. stores `Experiment.record(outcome)` as `runs[arm][seed]` and calls
   `Experiment.after_run` (an export, a CSV row).

It returns an `ExperimentResult`: the runs, their mean / std summary
(`report.summarize`), the Markdown table (`report.format_table`) and the kept
examples; `ExperimentResult.payload(...)` is what the configurations write as
results.json (`report.write_results`, atomically).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable

from keras_has.config.experiments import ARM_ALIASES, resolve_arms
from keras_has.experiments import report
from keras_has.util.files import atomic_write_json

__all__ = ["Arm", "Target", "Experiment", "RunOutcome", "ExperimentResult",
           "run_experiment", "eval_target", "arm_title", "check_seeds", "check_hiding",
           "run_finished", "read_train_time", "record_train_time", "ARM_ALIASES",
           "ARM_TITLES", "resolve_arms", "LOC_SHOW"]

ARM_TITLES = {"cam": "GAP (baseline)", "has": "Hide-and-Seek"}
TRAIN_TIME_FILE = "train_time.json"
# Written by the fine-tuning benchmark before it used this loop; still read.
LEGACY_TIMING_FILE = "benchmark_timing.json"
# The figures printed after each run for a target with object boxes.
LOC_SHOW = (("top1_cls", "Top-1 Clas"), ("gt_known_loc", "GT-known Loc"),
            ("max_box_acc_v2", "MaxBoxAccV2"))


def arm_title(name: str) -> str:
    """Table and figure title of an arm named after a WSOL method (`cam`: "GAP
    (baseline)", `has`: "Hide-and-Seek", others the method's title)."""
    from keras_has import methods

    name = ARM_ALIASES.get(name, name)
    return ARM_TITLES.get(name) or methods.title_of(name)


def check_seeds(seeds) -> tuple[int, ...]:
    """The seeds as a tuple of ints; ValueError for none or a repeated one."""
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed, received none")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct seeds, received {list(seeds)}")
    return seeds


def check_hiding(base, arms, what: str) -> None:
    """ValueError naming `hiding` when `has` is among `arms` and `base` hides nothing
    (`what` names the experiment in the message)."""
    if "has" in arms and not base.hiding.enabled:
        raise ValueError(f"hiding: the {what} needs Hide-and-Seek settings "
                         f"(grid_sizes with a non-zero size and hide_prob > 0), received "
                         f"grid_sizes={list(base.hiding.grid_sizes)} "
                         f"hide_prob={base.hiding.hide_prob}")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm (or configuration) of an experiment.

    Args:
      name: the key of its runs in `runs`, the summary and results.json (`cam`, `has`,
        `trial_003`).
      title: its row in the table and its name on the console ("GAP (baseline)").
      config: `config(seed, run_dir) -> TrainConfig`, the run of this arm for `seed`,
        written to `run_dir`.
      folder: its run folder under the experiment's output folder, a format string of
        `name` and `seed`.
    """

    name: str
    title: str
    config: Callable
    folder: str = "{name}_seed{seed}"

    def __post_init__(self):
        for field in ("name", "title", "folder"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{field}: expected a non-empty string, received {value!r}")
        if not callable(self.config):
            raise ValueError(f"config: expected a function (seed, run_dir) -> TrainConfig, "
                             f"received {self.config!r}")

    def run_dir(self, output_dir: str, seed: int) -> str:
        """The run folder of this arm's run for `seed`."""
        return os.path.join(output_dir, self.folder.format(name=self.name, seed=seed))


@dataclasses.dataclass(frozen=True)
class Target:
    """A split every trained model is evaluated on.

    Args:
      name: the key of its results in `RunOutcome.results` (`object`, `part`, `mask`).
      dataset: an eval-style dataset (`keras_has.data.make_eval_dataset`).
      label: its name on the console (the split, e.g. `test_head`).
      show: `(metric, title)` pairs printed after each run, where measured.
      examples: keep the first seed's first `Experiment.gallery_size` images and their
        CAMs (for galleries; part boxes from a part target).
    """

    name: str
    dataset: object
    label: str
    show: tuple = LOC_SHOW
    examples: bool = False


def eval_target(name: str, source, split: str, config, preprocessing, *, label=None,
                show=LOC_SHOW, examples: bool = False) -> Target:
    """A `Target` on `split` of `source` at `config`'s image size and evaluation batch,
    fed with `preprocessing` (the runs' own, `keras_has.train.trainer.run_preprocessing`)."""
    from keras_has import data

    dataset = data.make_eval_dataset(source, config.data.image_size,
                                     config.data.eval_batch_size or config.data.batch_size,
                                     split=split, preprocessing=preprocessing)
    return Target(name, dataset, label or split, tuple(show), examples)


@dataclasses.dataclass
class RunOutcome:
    """One trained and evaluated run, what `Experiment.record` turns into its record.

    Attributes:
      arm, seed, config: the run (its config as trained, `output_dir` its folder).
      train: the `keras_has.train.trainer.TrainResult` (`model`, `history`, ...).
      timing: `{"seconds_per_epoch", "train_seconds", "epochs_timed"}`
        (`record_train_time`; None values when never timed).
      results: `{target name: LocalizationResult}`.
    """

    arm: Arm
    seed: int
    config: object
    train: object
    timing: dict
    results: dict

    @property
    def metrics(self) -> dict:
        """`{target name: metrics dict}`."""
        return {name: result.metrics for name, result in self.results.items()}

    @property
    def epochs(self) -> int:
        """Epochs the run has logged in all (this call and earlier ones)."""
        return len(self.train.history.get("epoch", []))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What `run_experiment` runs and how it reports it.

    Args:
      arms: `Arm`s in table order (distinct names and run folders).
      seeds: one run per arm and seed (distinct integers).
      record: `record(RunOutcome) -> dict`, a run's entry in `runs` (numbers, nested
        dicts, None; strings are kept but not summarized).
      columns: `report.Column`s of the table over the summary of the records.
      cam_threshold: CAM threshold (fraction of max) of GT-known / Top-1 Loc.
      gallery_size: images kept per target that asks for examples (first seed only).
      recorded: optional `recorded(arm, seed) -> record or None`: a run whose record is
        known already and is neither trained nor evaluated again.
      after_run: optional `after_run(RunOutcome, record)`, called after each run that
        was trained or evaluated (an export, a CSV row).
      extra_rows, units, detail, one_seed_hint: passed to `report.format_table`.
    """

    arms: tuple
    seeds: tuple
    record: Callable
    columns: tuple
    cam_threshold: float = 0.2
    gallery_size: int = 0
    recorded: Callable | None = None
    after_run: Callable | None = None
    extra_rows: tuple = ()
    units: str = "percent"
    detail: str = "Loc at IoU >= 0.5"
    one_seed_hint: str = ""

    def __post_init__(self):
        arms = tuple(self.arms)
        if not arms or not all(isinstance(a, Arm) for a in arms):
            raise ValueError(f"arms: expected one or more Arm, received {list(arms)}")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: expected distinct names, received {names}")
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        folders = [a.run_dir("", s) for a in arms for s in self.seeds]
        if len(set(folders)) != len(folders):
            raise ValueError(f"arms: expected one run folder per arm and seed, received "
                             f"{folders}")
        if not 0.0 <= float(self.cam_threshold) <= 1.0:
            raise ValueError(f"cam_threshold: expected a value in [0, 1], received "
                             f"{self.cam_threshold}")
        if int(self.gallery_size) < 0:
            raise ValueError(f"gallery_size: expected an integer >= 0, received "
                             f"{self.gallery_size}")
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "extra_rows", tuple(self.extra_rows))

    def plan(self, output_dir: str) -> list:
        """`[(arm, seed, config)]` in run order (seeds outer, arms inner); building every
        config validates it, so a bad arm fails before anything trains."""
        output_dir = os.path.abspath(os.path.expanduser(output_dir))
        return [(arm, seed, arm.config(seed, arm.run_dir(output_dir, seed)))
                for seed in self.seeds for arm in self.arms]


@dataclasses.dataclass
class ExperimentResult:
    """What `run_experiment` returns.

    Attributes:
      runs: `{arm: {seed: record}}`.
      summary: `{arm: summary}` (`report.summarize`).
      table: the Markdown table and its note.
      examples: `{arm: {target: examples}}` kept from the first seed's runs.
      ious: `{arm: {target: per-image IoUs}}` of the same runs.
    """

    runs: dict
    summary: dict
    table: str
    examples: dict
    ious: dict
    seeds: tuple
    cam_threshold: float

    def payload(self, **extra) -> dict:
        """results.json's content: seeds, cam_threshold, runs, summary, table and `extra`."""
        return {"seeds": list(self.seeds), "cam_threshold": self.cam_threshold,
                "runs": self.runs, "summary": self.summary, "table": self.table, **extra}


def run_finished(config) -> bool:
    """True when `config.output_dir` holds a finished run: `model.keras` and a
    training log of `config.epochs` epochs (`train` then trains nothing)."""
    from keras_has.train.run_folder import run_paths
    from keras_has.train.trainer import read_csv_log

    paths = run_paths(os.path.abspath(os.path.expanduser(config.output_dir)))
    if not (os.path.isfile(paths["model"]) and os.path.isfile(paths["csv"])):
        return False
    return len(read_csv_log(paths["csv"]).get("epoch", [])) >= config.epochs


def read_train_time(run_dir: str) -> dict | None:
    """The run's recorded training time (`train_time.json`, or the fine-tuning
    benchmark's older `benchmark_timing.json`), or None when never recorded."""
    path = os.path.join(run_dir, TRAIN_TIME_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return {"seconds_per_epoch": saved.get("seconds_per_epoch"),
                "train_seconds": saved.get("train_seconds"),
                "epochs_timed": saved.get("epochs_timed", 0)}
    legacy = os.path.join(run_dir, LEGACY_TIMING_FILE)
    if os.path.isfile(legacy):
        with open(legacy, encoding="utf-8") as f:
            saved = json.load(f)
        seconds = float(saved.get("train_seconds", 0.0))
        epochs = int(saved.get("epochs_logged", 0))
        return {"seconds_per_epoch": seconds / epochs if epochs else None,
                "train_seconds": seconds, "epochs_timed": epochs}
    return None


def record_train_time(run_dir: str, epochs_run, seconds: float,
                      epoch_seconds=None) -> dict:
    """The run's training time after a `train` call of `seconds` that ran the epochs
    `epochs_run`: when it trained, seconds per epoch of this call and the total with
    the earlier calls' recorded seconds, written to `run_dir/train_time.json`; when it
    trained nothing (a finished run), the recorded time (None values if never timed).
    `epoch_seconds` (each epoch's time inside `fit`, `TrainResult.epoch_seconds`) gives
    the seconds per epoch without the call's set-up (model, statistics, data); without
    it, `seconds` is spread over the epochs."""
    earlier = read_train_time(run_dir)
    if not epochs_run:
        return earlier or {"seconds_per_epoch": None, "train_seconds": None,
                           "epochs_timed": 0}
    total = seconds + float((earlier or {}).get("train_seconds") or 0.0)
    per_epoch = (sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds
                 else seconds / len(epochs_run))
    timing = {"seconds_per_epoch": per_epoch, "train_seconds": total,
              "epochs_timed": len(epochs_run)}
    atomic_write_json(os.path.join(run_dir, TRAIN_TIME_FILE), timing)
    return timing


def _evaluate(model, targets, cam_threshold: float, keep: int, verbose: int) -> dict:
    from keras_has.localize.evaluation import run_localization

    return {t.name: run_localization(model, t.dataset, cam_threshold=cam_threshold,
                                     num_examples=keep if t.examples else 0,
                                     verbose=verbose)
            for t in targets}


def _figures_line(target: Target, metrics: dict) -> str | None:
    shown = [f"{title} {metrics[key]:.2f}" for key, title in target.show if key in metrics]
    return f"  {target.label}: " + ", ".join(shown) if shown else None


def run_experiment(experiment: Experiment, targets, *, output_dir: str, verbose: int = 1,
                   log=print) -> ExperimentResult:
    """Runs every arm for every seed, evaluates each run on `targets`, and summarizes.

    Args:
      experiment: the `Experiment`.
      targets: `Target`s (distinct names), evaluated in this order.
      output_dir: the experiment's folder; run folders go below it.
      verbose: 0 silent; 1 progress bars; 2 one line per epoch (-1: 1 on a terminal,
        else 2). With 1 or 2, a line per run before it ("training ..." / "reusing ...")
        and its figures after it.
      log: the print-like function of those lines.

    Returns:
      `ExperimentResult`.
    """
    from keras_has.train.trainer import train
    from keras_has.util.console import fit_verbosity

    targets = tuple(targets)
    if not targets or len({t.name for t in targets}) != len(targets):
        raise ValueError(f"targets: expected one or more with distinct names, received "
                         f"{[t.name for t in targets]}")
    verbose = fit_verbosity(verbose)
    say = log if verbose and log is not None else (lambda *a, **k: None)
    plan = experiment.plan(output_dir)
    runs = {arm.name: {} for arm in experiment.arms}
    examples, ious = {}, {}
    first_seed = experiment.seeds[0]
    for k, (arm, seed, config) in enumerate(plan, start=1):
        where = f"{arm.title}, seed {seed}: {k}/{len(plan)}"
        known = experiment.recorded(arm, seed) if experiment.recorded else None
        if known is not None:
            say(f"reusing {where} (finished, recorded)", flush=True)
            runs[arm.name][seed] = known
            continue
        if run_finished(config):
            say(f"reusing {where} (finished, {config.output_dir})", flush=True)
        else:
            say(f"training {where} ({config.epochs} epochs, {config.output_dir})", flush=True)
        started = time.perf_counter()
        trained = train(dataclasses.replace(config, verbose=verbose))
        timing = record_train_time(config.output_dir, trained.epochs_run,
                                   time.perf_counter() - started, trained.epoch_seconds)
        keep = experiment.gallery_size if seed == first_seed else 0
        results = _evaluate(trained.model, targets, experiment.cam_threshold, keep,
                            1 if verbose == 1 else 0)
        for target in targets:
            line = _figures_line(target, results[target.name].metrics)
            if line:
                say(line, flush=True)
            if keep and target.examples and results[target.name].examples is not None:
                examples.setdefault(arm.name, {})[target.name] = results[target.name].examples
                ious.setdefault(arm.name, {})[target.name] = results[target.name].ious
        outcome = RunOutcome(arm=arm, seed=seed, config=config, train=trained,
                             timing=timing, results=results)
        record = experiment.record(outcome)
        runs[arm.name][seed] = record
        if experiment.after_run is not None:
            experiment.after_run(outcome, record)

    summary = report.summarize(runs)
    table = report.format_table(
        summary, [(a.name, a.title) for a in experiment.arms], experiment.columns,
        len(experiment.seeds), extra_rows=experiment.extra_rows, units=experiment.units,
        detail=experiment.detail, one_seed_hint=experiment.one_seed_hint)
    return ExperimentResult(runs=runs, summary=summary, table=table, examples=examples,
                            ious=ious, seeds=experiment.seeds,
                            cam_threshold=experiment.cam_threshold)
