"""Temporal comparison: summary arithmetic, Table 5 layout, tiny end-to-end run, script."""
import json
import os
import subprocess
import sys

import pytest

from keras_has.temporal.comparison import format_table, run_temporal_comparison, summarize
from keras_has.config.temporal import TemporalConfig

from tests.helpers import REPO_ROOT  # noqa: E402

REPO = str(REPO_ROOT)


def _metrics(maps, clas, acc=100.0):
    return {"map": dict(zip((0.1, 0.5), maps)), "classification_map": clas, "accuracy": acc}


def test_summarize_mean_std_and_table():
    runs = {"baseline": {0: _metrics((80.0, 10.0), 99.0), 1: _metrics((90.0, 20.0), 97.0)},
            "has": {0: _metrics((85.0, 30.0), 98.0), 1: _metrics((87.0, 40.0), 98.0)}}
    s = summarize(runs)
    assert s["baseline"]["map"][0.5]["mean"] == pytest.approx(15.0)
    assert s["baseline"]["map"][0.5]["std"] == pytest.approx(5.0)  # population std
    assert s["has"]["map"][0.1]["values"] == [85.0, 87.0]
    assert s["baseline"]["classification_map"]["mean"] == pytest.approx(98.0)
    table = format_table(s, 2)
    lines = table.splitlines()
    assert lines[0] == "| Method | mAP@0.1 | mAP@0.5 | Clas mAP |"
    assert lines[2] == "| Video GAP (baseline) | 85.00 ± 5.00 | 15.00 ± 5.00 | 98.00 ± 1.00 |"
    assert lines[3] == "| Video Hide-and-Seek | 86.00 ± 1.00 | 35.00 ± 5.00 | 98.00 ± 0.00 |"


def test_comparison_rejects_bad_input(tmp_path):
    cfg = TemporalConfig(output_dir=str(tmp_path), source_config="tiny")
    with pytest.raises(ValueError, match="must hide"):
        run_temporal_comparison(cfg, str(tmp_path), seeds=(0,))
    cfg = TemporalConfig(output_dir=str(tmp_path), source_config="tiny", segment_lengths=(2,))
    with pytest.raises(ValueError, match="distinct"):
        run_temporal_comparison(cfg, str(tmp_path), seeds=(0, 0))


def test_tiny_comparison_end_to_end(tmp_path):
    cfg = TemporalConfig(output_dir=str(tmp_path), source_config="tiny", batch_size=8,
                         epochs=1, hidden=8, segment_lengths=(0, 2, 4))
    result = run_temporal_comparison(cfg, str(tmp_path / "cmp"), seeds=(0,), figure_videos=2,
                                     log=None)
    saved = json.load(open(result.results_path))
    assert saved["seeds"] == [0]
    assert set(saved["runs"]) == {"baseline", "has"}
    for arm in ("baseline", "has"):
        run = saved["runs"][arm]["0"]
        assert sorted(run["map"]) == ["0.1", "0.2", "0.3", "0.4", "0.5"]
        assert os.path.exists(tmp_path / "cmp" / f"{arm}_seed0" / "metrics.json")
    # The baseline's run folder has no hiding; the HaS folder has it.
    base_cfg = json.load(open(tmp_path / "cmp" / "baseline_seed0" / "config.json"))
    has_cfg = json.load(open(tmp_path / "cmp" / "has_seed0" / "config.json"))
    assert base_cfg["segment_lengths"] == [] and has_cfg["segment_lengths"] == [0, 2, 4]
    import cv2

    image = cv2.imread(result.timeline_path)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 900
    assert "Video Hide-and-Seek" in result.table


def _script(name, *args):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_compare_script_bad_input_fails_before_training(tmp_path):
    folder = tmp_path / "feats"
    (folder / "features").mkdir(parents=True)
    (folder / "class_names.txt").write_text("Jump\n")
    (folder / "videos.txt").write_text("v1 validation 1.0 Jump\n")
    (folder / "annotations.txt").write_text("")
    # The THUMOS14 flagfile (nested flagfile, hiding flags) on a folder lacking features.
    out = _script("compare_temporal.py", "--flagfile=flags/thumos14_has.cfg",
                  f"--source={folder}", f"--output_dir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert "videos.txt:1: video 'v1' has no features file" in out.stderr
    assert not (tmp_path / "run").exists()


def test_compare_script_tiny_run(tmp_path):
    out = _script("compare_temporal.py", "--flagfile=flags/temporal_quickstart.cfg",
                  "--source_config=tiny", "--epochs=1", "--batch_size=8", "--hidden=8",
                  f"--output_dir={tmp_path}", "--figure_videos=1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| Video GAP (baseline) |" in out.stdout and "| Video Hide-and-Seek |" in out.stdout
    assert (tmp_path / "results.json").exists() and (tmp_path / "timeline.png").exists()
