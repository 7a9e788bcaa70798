"""The experiment loop (keras_has.experiments.runner) and its report: mean / std by hand,
the table read back by a Markdown parser, the arm alias, training times, and the loop on
tiny runs (each arm x seed trained once; finished or recorded runs reused)."""
import functools
import json
import math
import os

import pytest

from keras_has import config as cfg
from keras_has.config import BenchmarkConfig
from keras_has.experiments import report, runner
from keras_has.experiments.comparison import comparison_config

RUNS = {
    "cam": {0: {"object": {"gt_known_loc": 4.0, "top1_cls": 100.0, "image": "a.png"},
                "part": None, "seconds": 2.0},
            1: {"object": {"gt_known_loc": 6.0, "top1_cls": 98.0, "image": "b.png"},
                "part": None, "seconds": None}},
    "has": {0: {"object": {"gt_known_loc": 10.0, "top1_cls": 99.0},
                "part": {"gt_known_loc": 1.0}, "seconds": 3.0},
            1: {"object": {"gt_known_loc": 13.0, "top1_cls": 99.0},
                "part": {"gt_known_loc": 3.0}, "seconds": 5.0}},
}


# ------------------------------------------------------------------------- summary
def test_summary_is_the_mean_and_population_std_over_seeds():
    s = report.summarize(RUNS)
    assert list(s) == ["cam", "has"]
    # Strings are not summarized; None where no seed has a value.
    assert s["cam"]["object"] == {"gt_known_loc": (5.0, 1.0), "top1_cls": (99.0, 1.0)}
    assert s["cam"]["part"] is None
    assert s["cam"]["seconds"] == (2.0, 0.0)  # over the one seed that has it
    assert s["has"]["object"] == {"gt_known_loc": (11.5, 1.5), "top1_cls": (99.0, 0.0)}
    assert s["has"]["part"] == {"gt_known_loc": (2.0, 1.0)}
    assert s["has"]["seconds"] == (4.0, 1.0)
    three = report.summarize({"x": {0: {"v": 1.0}, 1: {"v": 2.0}, 2: {"v": 6.0}}})
    mean, std = three["x"]["v"]
    assert mean == 3.0 and math.isclose(std, math.sqrt((4.0 + 1.0 + 9.0) / 3.0))


# --------------------------------------------------------------------------- table
COLUMNS = (report.Column("GT-known Loc", ("object", "gt_known_loc")),
           report.Column("PxAP", ("object", "pxap"), optional=True),
           report.Column("vs part", ("part", "gt_known_loc"), optional=True),
           report.Column("Time vs GAP", ("seconds",), relative=True))


def test_table_is_markdown_with_one_row_per_arm_and_the_measured_columns(table_rows):
    summary = report.summarize(RUNS)
    table = report.format_table(
        summary, [("cam", "GAP (baseline)"), ("has", "Hide-and-Seek"), ("spg", "SPG")],
        COLUMNS, 2, extra_rows=[("Linear probe", {"GT-known Loc": "12.00"})])
    rows, align = table_rows(table)
    # No arm has PxAP: no column; SPG never ran: no row; the note is not a row.
    assert rows == [["Method", "GT-known Loc", "vs part", "Time vs GAP"],
                    ["GAP (baseline)", "5.00 ± 1.00", "-", "1.00x"],
                    ["Hide-and-Seek", "11.50 ± 1.50", "2.00 ± 1.00", "2.00x"],
                    ["Linear probe", "12.00", "", ""]]
    assert align == ["left", "right", "right", "right"]
    assert table.splitlines()[-1] == "(percent; mean ± std over 2 seeds; Loc at IoU >= 0.5)"
    # One seed: the value alone, no spread claimed.
    one = report.format_table(summary, [("has", "Hide-and-Seek")], COLUMNS[:1], 1,
                              one_seed_hint="run --seeds=0,1,2 for one", units="%",
                              detail="")
    assert table_rows(one)[0][1] == ["Hide-and-Seek", "11.50"]
    assert one.splitlines()[-1] == "(%; 1 seed: no spread measured, run --seeds=0,1,2 for one)"
    # The relative column needs the first row's value.
    no_time = report.format_table(summary, [("has", "Hide-and-Seek")],
                                  (report.Column("T", ("missing",), relative=True),), 2)
    assert table_rows(no_time)[0][0] == ["Method"]
    with pytest.raises(ValueError, match=r"extra_rows: 'probe' names columns \['PxAP'\]"):
        report.format_table(summary, [("cam", "GAP")], COLUMNS, 2,
                            extra_rows=[("probe", {"PxAP": "1"})])


def test_markdown_table_escapes_pipes_and_checks_its_rows(table_rows):
    text = report.markdown_table(["Method", "a|b"], [["x", "1"], ["y"]])
    assert table_rows(text) == ([["Method", "a|b"], ["x", "1"], ["y", ""]], ["left", "right"])
    assert len({len(line) for line in text.splitlines()}) == 1  # padded to equal widths
    with pytest.raises(ValueError, match="rows: expected at most 2 cells per row, received 3"):
        report.markdown_table(["a", "b"], [["1", "2", "3"]])
    assert report.format_cell((float("nan"), 0.0), True) == "nan"
    assert report.format_cell(None, True) == "-"


# ------------------------------------------------------------------------ arm names
def test_gap_is_accepted_for_cam():
    assert runner.resolve_arms(["gap", "has"], ("cam", "has")) == ("cam", "has")
    assert BenchmarkConfig(arms=("gap",)).arms == ("cam",)
    assert BenchmarkConfig().arms == ("cam", "has")
    assert runner.arm_title("gap") == runner.arm_title("cam") == "GAP (baseline)"
    with pytest.raises(ValueError, match=r"arms: expected distinct names .*received "
                                         r"\['gap', 'cam'\]"):
        runner.resolve_arms(["gap", "cam"], ("cam", "has"))
    with pytest.raises(ValueError, match=r"arms: expected one or more names among "
                                         r"\['cam', 'has'\] \(gap for cam\), received \['acol'\]"):
        BenchmarkConfig(arms=("acol",))


# ---------------------------------------------------------------------- train time
def test_train_time_per_epoch_of_this_call_and_total_over_calls(tmp_path):
    run = str(tmp_path / "run")
    os.makedirs(run)
    never = {"seconds_per_epoch": None, "train_seconds": None, "epochs_timed": 0}
    assert runner.record_train_time(run, [], 5.0) == never
    assert runner.record_train_time(run, [0, 1], 6.0) == {
        "seconds_per_epoch": 3.0, "train_seconds": 6.0, "epochs_timed": 2}
    resumed = runner.record_train_time(run, [2], 4.0)  # one more epoch after a restart
    assert resumed == {"seconds_per_epoch": 4.0, "train_seconds": 10.0, "epochs_timed": 1}
    assert runner.record_train_time(run, [], 0.5) == resumed  # finished: as recorded
    assert json.loads((tmp_path / "run" / "train_time.json").read_text()) == resumed
    # With the epochs' own times the call's set-up (here 9 of 12 s) is left out.
    timed = runner.record_train_time(str(tmp_path / "run"), [4, 5], 12.0, [1.0, 2.0])
    assert timed == {"seconds_per_epoch": 1.5, "train_seconds": 22.0, "epochs_timed": 2}
    old = tmp_path / "old"  # a run of the benchmark before the shared loop
    old.mkdir()
    (old / "benchmark_timing.json").write_text('{"train_seconds": 90.0, "epochs_logged": 3}')
    assert runner.read_train_time(str(old)) == {
        "seconds_per_epoch": 30.0, "train_seconds": 90.0, "epochs_timed": 3}


# --------------------------------------------------------------------------- loop
def _base(root):
    return cfg.TrainConfig(
        model="tiny_gap", output_dir="unused",
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split="test"),
        hiding=cfg.HidingConfig(grid_sizes=(8,), hide_prob=0.5), epochs=1,
        steps_per_epoch=1, strategy="one_device", eval_every=0, verbose=0,
        model_kwargs={"widths": (4, 8)})


def _arms(base):
    return tuple(runner.Arm(m, runner.arm_title(m), functools.partial(comparison_config, base, m))
                 for m in ("cam", "has"))


def test_plan_is_seeds_outer_arms_inner_and_rejects_clashing_arms(tmp_path):
    base = _base("unused_source")
    arms = _arms(base)
    record = dict  # never called here
    experiment = runner.Experiment(arms=arms, seeds=(3, 1), record=record, columns=())
    plan = experiment.plan(str(tmp_path))
    assert [(a.name, s, os.path.basename(c.output_dir), c.seed, c.wsol.method)
            for a, s, c in plan] == [("cam", 3, "cam_seed3", 3, "cam"),
                                     ("has", 3, "has_seed3", 3, "has"),
                                     ("cam", 1, "cam_seed1", 1, "cam"),
                                     ("has", 1, "has_seed1", 1, "has")]
    assert plan[0][2].hiding.hide_prob == 0.0 and plan[1][2].hiding.grid_sizes == (8,)
    with pytest.raises(ValueError, match="arms: expected distinct names"):
        runner.Experiment(arms=arms + arms[:1], seeds=(0,), record=record, columns=())
    same_folder = runner.Arm("x", "X", arms[0].config, folder="runs")
    with pytest.raises(ValueError, match="arms: expected one run folder per arm and seed"):
        runner.Experiment(arms=(same_folder,), seeds=(0, 1), record=record, columns=())
    with pytest.raises(ValueError, match=r"seeds: expected distinct seeds, received \[0, 0\]"):
        runner.Experiment(arms=arms, seeds=(0, 0), record=record, columns=())


def test_loop_trains_each_run_once_then_reuses_finished_and_recorded_runs(tmp_path,
                                                                          tiny_wsol_folder,
                                                                          table_rows):
    from keras_has.train.trainer import run_preprocessing, source_from_config

    base = _base(tiny_wsol_folder)
    source = source_from_config(base)
    prep, _, _ = run_preprocessing(base, source)
    target = runner.eval_target("object", source, "test", base, prep, examples=True)
    outcomes, after = [], []

    def record(outcome):
        outcomes.append(outcome)
        return {"top1_cls": outcome.metrics["object"]["top1_cls"],
                "num_images": outcome.metrics["object"]["num_images"],
                "epochs": outcome.epochs}

    experiment = runner.Experiment(
        arms=_arms(base), seeds=(0,), record=record, gallery_size=2,
        columns=(report.Column("Top-1 Clas", ("top1_cls",)),),
        after_run=lambda outcome, rec: after.append((outcome.arm.name, rec)))
    out = str(tmp_path / "exp")
    lines = []
    first = runner.run_experiment(experiment, [target], output_dir=out, verbose=2,
                                  log=lambda *a, **k: lines.append(" ".join(a)))
    assert [l.split(":")[0] for l in lines if not l.startswith(" ")] == [
        "training GAP (baseline), seed 0", "training Hide-and-Seek, seed 0"]
    assert "  test: Top-1 Clas" in lines[1]
    assert [o.train.epochs_run for o in outcomes] == [[1], [1]]
    assert [name for name, _ in after] == ["cam", "has"]
    for arm in ("cam", "has"):
        assert first.runs[arm][0]["num_images"] == 4 and first.runs[arm][0]["epochs"] == 1
        top1 = first.runs[arm][0]["top1_cls"]
        assert first.summary[arm]["top1_cls"] == (top1, 0.0)
        assert len(first.examples[arm]["object"]["image_id"]) == 2
        timing = json.loads((tmp_path / "exp" / f"{arm}_seed0" / "train_time.json").read_text())
        assert timing["epochs_timed"] == 1 and timing["train_seconds"] > 0
    rows, _ = table_rows(first.table)
    assert rows == [["Method", "Top-1 Clas"],
                    ["GAP (baseline)", f"{first.runs['cam'][0]['top1_cls']:.2f}"],
                    ["Hide-and-Seek", f"{first.runs['has'][0]['top1_cls']:.2f}"]]
    log_before = (tmp_path / "exp" / "cam_seed0" / "training_log.csv").read_text()

    # Again: the finished runs train no epoch and give the same records.
    lines.clear()
    again = runner.run_experiment(experiment, [target], output_dir=out, verbose=2,
                                  log=lambda *a, **k: lines.append(" ".join(a)))
    assert [l for l in lines if not l.startswith(" ")] == [
        f"reusing GAP (baseline), seed 0: 1/2 (finished, {out}/cam_seed0)",
        f"reusing Hide-and-Seek, seed 0: 2/2 (finished, {out}/has_seed0)"]
    assert [o.train.epochs_run for o in outcomes[2:]] == [[], []]
    assert again.runs == first.runs
    assert (tmp_path / "exp" / "cam_seed0" / "training_log.csv").read_text() == log_before

    # Recorded runs are neither trained nor evaluated: no outcome, no after_run.
    known = {"top1_cls": 12.5, "num_images": 4, "epochs": 1}
    recorded = runner.run_experiment(
        runner.Experiment(arms=experiment.arms, seeds=(0,), record=record,
                          columns=experiment.columns, recorded=lambda arm, seed: known),
        [target], output_dir=out, verbose=0)
    assert len(outcomes) == 4 and len(after) == 4
    assert recorded.runs == {"cam": {0: known}, "has": {0: known}}
    assert recorded.summary["cam"]["top1_cls"] == (12.5, 0.0)
