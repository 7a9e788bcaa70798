"""The fine-tuning benchmark (keras_has.experiments.finetune_benchmark,
scripts/benchmark_finetune.py): its settings, a tiny run against body and part boxes,
its reuse with the old arm name, and the script's refusal of bad settings."""
import json
import shutil
import subprocess
import sys

import pytest

from keras_has.config import BenchmarkConfig, DataConfig, HidingConfig, TrainConfig
from keras_has.experiments import finetune_benchmark as fb
from keras_has.serve import evaluate as serve_evaluate
from tests.helpers import REPO_ROOT, subprocess_env

FOLDER = {"cam": "gap_seed0", "has": "has_seed0"}  # run folders of seed 0


def test_settings_are_checked_and_normalised():
    config = BenchmarkConfig(seeds=[2, 0], head_split="", arms=["has", "gap"])
    assert config.seeds == (2, 0) and config.head_split is None
    assert config.arms == ("has", "cam")
    with pytest.raises(ValueError, match=r"seeds: expected no repeated seeds, received \[1, 1\]"):
        BenchmarkConfig(seeds=(1, 1))
    with pytest.raises(ValueError, match="body_split: expected the split with the object "
                                         "boxes, received ''"):
        BenchmarkConfig(body_split="")
    with pytest.raises(ValueError, match=r"cam_threshold: expected a fraction .*received 2"):
        BenchmarkConfig(cam_threshold=2)


def _corner_head_split(root):
    """`test_head` beside `test`: the same images, a 3x3 corner of each box as the part."""
    head = root / "metadata" / "test_head"
    shutil.copytree(root / "metadata" / "test", head)
    rows = []
    for line in (head / "localization.txt").read_text().splitlines():
        rel, x0, y0, _, _ = line.split(",")
        rows.append(f"{rel},{x0},{y0},{int(x0) + 2},{int(y0) + 2}")
    (head / "localization.txt").write_text("\n".join(rows) + "\n")


def test_benchmark_runs_both_arms_against_body_and_head_boxes_and_reuses_them(
        tiny_wsol_folder, tmp_path, table_rows):
    root = tmp_path / "data"
    shutil.copytree(tiny_wsol_folder, root)
    _corner_head_split(root)
    cfg = TrainConfig(
        model="tiny_gap", output_dir=str(tmp_path / "unused"), epochs=1, steps_per_epoch=1,
        data=DataConfig(source=str(root), image_size=32, batch_size=4),
        hiding=HidingConfig(grid_sizes=(0, 8), hide_prob=0.5), strategy="one_device",
        verbose=0, model_kwargs={"widths": (4, 8)})
    out = tmp_path / "b"
    with pytest.raises(ValueError, match="head_split: expected one of the splits"):
        fb.run_benchmark(cfg, output_dir=str(out), seeds=(0,), head_split="nope",
                         mask_split="")
    assert not out.exists()
    result = fb.run_benchmark(cfg, output_dir=str(out), seeds=(0,), mask_split="",
                              gallery_size=2, verbose=0)
    assert set(result.runs) == {"cam", "has"}
    # The baseline's run folder keeps the name of the earlier benchmark's arm.
    assert (out / "gap_seed0" / "model.keras").exists()
    assert (out / "has_seed0" / "model.keras").exists()
    gap_config = json.loads((out / "gap_seed0" / "config.json").read_text())
    assert gap_config["hiding"]["hide_prob"] == 0.0 and gap_config["eval_every"] == 0
    assert gap_config["data"]["eval_split"] is None  # no evaluation while training
    for arm in ("cam", "has"):
        row = result.runs[arm][0]
        timing = json.loads((out / FOLDER[arm] / "train_time.json").read_text())
        assert row["train_minutes"] == timing["train_seconds"] / 60.0 and row["epochs"] == 1
        # The head figures are the saved model's on the head split, evaluated on its own.
        alone, _, _ = serve_evaluate.evaluate_model_file(
            str(out / FOLDER[arm] / "model.keras"), str(root), split="test_head",
            num_examples=0, verbose=0)
        assert row["gt_known_loc_head"] == alone.metrics["gt_known_loc"]
        assert row["max_box_acc_v2_head"] == alone.metrics["max_box_acc_v2"]
    assert result.probe is not None and 0 <= result.probe["top1_cls"] <= 100
    rows, _ = table_rows(result.table)
    assert rows[0] == ["Method", "Top-1 Clas", "GT-known Loc (body)", "MaxBoxAccV2 (body)",
                       "GT-known Loc (head)", "fine-tune min"]  # no mask split: no PxAP
    cam = result.runs["cam"][0]
    assert rows[1] == ["GAP (baseline)", f"{cam['top1_cls']:.2f}",
                       f"{cam['gt_known_loc_body']:.2f}", f"{cam['max_box_acc_v2_body']:.2f}",
                       f"{cam['gt_known_loc_head']:.2f}", f"{cam['train_minutes']:.2f}"]
    assert rows[3] == ["Linear probe (frozen pretrained features)",
                       f"{result.probe['top1_cls']:.2f}", "", "", "", ""]
    saved = json.loads(open(result.results_path).read())
    assert saved["preprocessing"]["mode"] == "dataset"  # random init: dataset statistics
    assert saved["runs"]["cam"]["0"] == json.loads(json.dumps(cam))
    assert saved["splits"] == {"body": "test", "head": "test_head", "mask": ""}
    assert result.gallery_path and (out / "gallery.png").exists()

    # The old arm name still works and finds the finished runs: nothing retrained.
    log = (out / "gap_seed0" / "training_log.csv").read_text()
    again = fb.run_benchmark(cfg, output_dir=str(out), seeds=(0,), mask_split="",
                             gallery_size=0, linear_probe=False, verbose=0,
                             arms=("gap", "has"))
    assert again.runs == result.runs
    assert (out / "gap_seed0" / "training_log.csv").read_text() == log


def test_script_refuses_an_unknown_arm_before_anything_is_written(tiny_wsol_folder, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "benchmark_finetune.py"),
         "--model=tiny_gap", f"--source={tiny_wsol_folder}", "--arms=gap,acol",
         f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 2
    assert ("benchmark_finetune.py: invalid configuration: arms: expected one or more names "
            "among ['cam', 'has'] (gap for cam), received ['gap', 'acol']") in proc.stderr
    assert not (tmp_path / "out").exists()
