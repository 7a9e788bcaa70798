"""The hyperparameter search (keras_has.experiments.tuning, `tune`): the plan, the
tuning split, and a tiny search that writes trials.csv, best.cfg, results.json and its
table, and skips finished trials when run again."""
import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest

from keras_has import config as cfg
from keras_has.experiments import tuning
from tests.helpers import make_wsol_folder


def test_plan_is_the_grid_or_a_seeded_draw_and_the_tuning_split_is_never_test():
    space = {"acol_threshold": (0.5, 0.7), "lr": (0.1, 0.01)}
    assert tuning.plan_trials(space, None) == [
        {"acol_threshold": 0.5, "lr": 0.1}, {"acol_threshold": 0.5, "lr": 0.01},
        {"acol_threshold": 0.7, "lr": 0.1}, {"acol_threshold": 0.7, "lr": 0.01}]
    draw = tuning.plan_trials(space, 2, seed=3)
    assert len(draw) == 2 and draw == tuning.plan_trials(space, 2, seed=3)

    class Source:
        splits = ("train", "validation", "test")

    assert tuning.tuning_split(Source()) == "validation"
    Source.splits = ("train", "test")
    with pytest.raises(ValueError, match="no split kept apart from test"):
        tuning.tuning_split(Source())
    with pytest.raises(ValueError, match="'bogus' is not a hyperparameter"):
        tuning.check_space({"bogus": (1,)}, "acol")
    with pytest.raises(ValueError, match="'acol_threshold' is not a hyperparameter of method "
                                         "'has'.*\\['epochs', 'hide_anneal', 'hide_from_epoch', "
                                         "'hide_prob', 'hide_share', 'hide_until_epoch', 'lr'\\]"):
        tuning.check_space({"acol_threshold": (0.5, 0.7)}, "has")
    with pytest.raises(ValueError, match="'hide_prob' is not a hyperparameter of method 'cam'"):
        tuning.check_space({"hide_prob": (0.25,)}, "cam")
    assert tuning.check_space({"acol_threshold": [0.5], "lr": [0.1]}, "acol") == {
        "acol_threshold": (0.5,), "lr": (0.1,)}


def test_hiding_schedule_and_epochs_are_searchable(tmp_path):
    space = tuning.check_space({"hide_until_epoch": (0.0, 7.0), "hide_anneal": (0.0, 1.0),
                                "epochs": (10.0,)}, "has")
    # Flag values arrive as floats; they become the config fields' types (0: to the end).
    assert space == {"hide_until_epoch": (None, 7), "hide_anneal": (False, True),
                     "epochs": (10,)}
    with pytest.raises(ValueError, match="'epochs' takes whole epochs"):
        tuning.check_space({"epochs": (2.5,)}, "cam")
    with pytest.raises(ValueError, match="'hide_until_epoch' is not a hyperparameter of method "
                                         "'cam'"):
        tuning.check_space({"hide_until_epoch": (7,)}, "cam")
    base = _base(tmp_path)
    base = dataclasses.replace(base, hiding=cfg.HidingConfig(grid_sizes=(8,)))
    config = tuning.trial_config(base, "has", {"hide_until_epoch": 7, "hide_anneal": True,
                                               "epochs": 10}, "val", str(tmp_path / "t"))
    assert (config.epochs, config.hiding.hide_until_epoch, config.hiding.hide_anneal) == (
        10, 7, True)
    assert config.hiding.grid_sizes == (8,)
    lines = tuning.flagfile_lines(config, {"hide_until_epoch": 7, "hide_anneal": True,
                                           "epochs": 10})
    assert lines == ["--method=has", "--epochs=10", "--hide_anneal=True",
                     "--hide_until_epoch=7"]
    open_ended = tuning.trial_config(base, "has", {"hide_until_epoch": None}, "val",
                                     str(tmp_path / "t"))
    assert tuning.flagfile_lines(open_ended, {"hide_until_epoch": None})[-1] == (
        "--hide_until_epoch=none")


def _base(tmp_path):
    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4)
    # A `val` split with boxes, apart from test.
    shutil.copytree(tmp_path / "d" / "metadata" / "test", tmp_path / "d" / "metadata" / "val")
    return cfg.TrainConfig(
        model="tiny_gap", output_dir=str(tmp_path / "ignored"),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split="test"),
        wsol=cfg.MethodConfig(method="auto"), epochs=1, steps_per_epoch=1,
        strategy="one_device", eval_every=0, verbose=0, model_kwargs={"widths": (8, 16)})


def test_tune_writes_every_trial_and_a_flagfile_and_resumes(tmp_path, capsys, table_rows):
    base = _base(tmp_path)
    out = tmp_path / "tune"
    space = {"acol_threshold": (0.5, 0.9)}
    result = tuning.run_tuning(base, output_dir=str(out), method="acol", space=space,
                               verbose=0)
    assert [int(r["trial"]) for r in result.rows] == [0, 1]
    with open(out / "trials.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [float(r["max_box_acc_v2"]) for r in written] == [
        r["max_box_acc_v2"] for r in result.rows]
    assert [json.loads(r["params"]) for r in written] == [{"acol_threshold": 0.5},
                                                          {"acol_threshold": 0.9}]
    scores = [float(r["max_box_acc_v2"]) for r in result.rows]
    best = int(np.argmax(scores))
    lines = (out / "best.cfg").read_text().splitlines()
    assert lines[1:] == ["--method=acol", "--grid_sizes=",
                         f"--acol_threshold={(0.5, 0.9)[best]!r}"]
    for i in (0, 1):  # each trial trained the method on the tuning split
        trained = json.loads((out / f"trial_{i:03d}" / "config.json").read_text())
        assert trained["wsol"]["acol_threshold"] == (0.5, 0.9)[i]
        assert trained["data"]["eval_split"] == "val"
    rows, _ = table_rows(result.table)
    assert [r[:2] for r in rows] == [["Method", "MaxBoxAccV2"],
                                     ["trial 0 (acol_threshold=0.5)", f"{scores[0]:.2f}"],
                                     ["trial 1 (acol_threshold=0.9)", f"{scores[1]:.2f}"]]
    saved = json.loads((out / "results.json").read_text())
    assert saved["best"]["trial"] == best and saved["split"] == "val"
    assert saved["runs"]["trial_001"][str(base.seed)]["max_box_acc_v2"] == scores[1]

    # A rerun trains nothing (the CSV is kept) and refuses another plan.
    before = (out / "trials.csv").read_text()
    capsys.readouterr()
    tuning.run_tuning(base, output_dir=str(out), method="acol", space=space, verbose=2)
    printed = [l for l in capsys.readouterr().out.splitlines() if l.startswith(("reusing",
                                                                                 "training"))]
    assert printed == [
        "reusing trial 0 (acol_threshold=0.5), seed 0: 1/2 (finished, recorded)",
        "reusing trial 1 (acol_threshold=0.9), seed 0: 2/2 (finished, recorded)"]
    assert (out / "trials.csv").read_text() == before
    with pytest.raises(ValueError, match="another plan"):
        tuning.run_tuning(base, output_dir=str(out), method="acol",
                          space={"acol_threshold": (0.6,)}, verbose=0)

    # Killed after training trial 1 but before its CSV row: the finished run is
    # evaluated again, not retrained, and its row comes back the same.
    (out / "trials.csv").write_text("\n".join(before.splitlines()[:2]) + "\n")
    log = (out / "trial_001" / "training_log.csv").read_text()
    capsys.readouterr()
    again = tuning.run_tuning(base, output_dir=str(out),
                              method="acol", space=space, verbose=2)
    printed = [l for l in capsys.readouterr().out.splitlines() if l.startswith(("reusing",
                                                                                 "training"))]
    assert printed == [
        "reusing trial 0 (acol_threshold=0.5), seed 0: 1/2 (finished, recorded)",
        f"reusing trial 1 (acol_threshold=0.9), seed 0: 2/2 (finished, {out / 'trial_001'})"]
    assert (out / "trial_001" / "training_log.csv").read_text() == log
    assert (out / "trials.csv").read_text() == before
    assert again.best["trial"] == best
