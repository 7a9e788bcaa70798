"""The comparison of methods (keras_has.experiments.comparison, `compare`): bad settings
refused before anything is written, a tiny end-to-end run (results, part boxes, PxAP
from a mask split, gallery, export, the table, resume), more methods, the script's
console."""
import dataclasses
import json
import math
import os
import shutil

import pytest

import numpy as np

from keras_has.experiments import comparison
from keras_has.serve import evaluate as serve_evaluate
from keras_has import config as cfg
from tests.helpers import make_wsol_folder


def _base(root, out, grid_sizes=(8,), hide_prob=0.5):
    return cfg.TrainConfig(
        model="tiny_gap", output_dir=str(out),
        data=cfg.DataConfig(source=root, image_size=32, batch_size=4, eval_split="test"),
        hiding=cfg.HidingConfig(grid_sizes=grid_sizes, hide_prob=hide_prob),
        epochs=1, steps_per_epoch=2, strategy="one_device", eval_every=0, verbose=0,
        model_kwargs={"widths": (8, 16)})


def test_rejects_a_config_that_hides_nothing(tmp_path):
    root = make_wsol_folder(str(tmp_path / "d"), n_train=4, n_test=2)
    with pytest.raises(ValueError, match="hiding"):
        comparison.run_comparison(_base(root, tmp_path, grid_sizes=(0,)),
                                  output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="seeds"):
        comparison.run_comparison(_base(root, tmp_path), output_dir=str(tmp_path / "o"),
                                  seeds=(1, 1))
    assert not os.path.exists(tmp_path / "o")
    with pytest.raises(ValueError, match="mask_split: expected one of the splits"):
        comparison.run_comparison(_base(root, tmp_path), output_dir=str(tmp_path / "o"),
                                  mask_split="test_masks")
    assert not os.path.exists(tmp_path / "o")


def _add_mask_split(root, split="test"):
    """`<split>_mask` beside `split`, as in pets3: each image's box as a filled mask."""
    import cv2

    meta = os.path.join(root, "metadata", split)
    out = os.path.join(root, "metadata", f"{split}_mask")
    os.makedirs(out)
    for name in ("image_ids", "class_labels", "image_sizes"):
        shutil.copy(os.path.join(meta, f"{name}.txt"), out)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    lines = []
    with open(os.path.join(meta, "localization.txt")) as f:
        for k, line in enumerate(f.read().split()):
            image_id, x0, y0, x1, y1 = line.split(",")
            mask = np.zeros((32, 32), np.uint8)
            mask[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = 255
            cv2.imwrite(os.path.join(root, "masks", f"m{k}.png"), mask)
            lines.append(f"{image_id},masks/m{k}.png,")
    with open(os.path.join(out, "localization.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def test_tiny_comparison_writes_results_gallery_and_export_and_resumes(tmp_path, capsys,
                                                                      table_rows):
    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4)
    # A head-box split and a mask split beside the test split, as in pets3 (`test_head`,
    # `test_mask`).
    shutil.copytree(os.path.join(root, "metadata", "test"),
                    os.path.join(root, "metadata", "test_head"))
    _add_mask_split(root)
    out = tmp_path / "cmp"
    result = comparison.run_comparison(_base(root, tmp_path / "ignored"), output_dir=str(out),
                                       seeds=(0,), gallery_size=2, verbose=0)
    saved = json.loads((out / "results.json").read_text())
    assert saved["part_boxes"] == {"split": "test_head"}
    for arm in ("cam", "has"):
        metrics = saved["runs"][arm]["0"]["object"]
        assert metrics["num_images"] == 4
        assert 0.0 <= metrics["gt_known_loc"] <= 100.0
        # The head split is a copy of the test split here: same localization numbers.
        assert saved["runs"][arm]["0"]["part"]["gt_known_loc"] == metrics["gt_known_loc"]
        assert os.path.exists(out / f"{arm}_seed0" / "model.keras")
        # PxAP comes from the mask split (the test split has boxes only): the same value
        # as the saved model evaluated on test_mask on its own, as saved (folding the
        # batch norms moves per-pixel scores by ~1e-6, enough to move PxAP's bins).
        alone, _, _ = serve_evaluate.evaluate_model_file(
            str(out / f"{arm}_seed0" / "model.keras"), root, split="test_mask",
            num_examples=0, verbose=0, fold_batch_norm=False)
        assert 0.0 <= metrics["pxap"] <= 100.0
        assert math.isclose(metrics["pxap"], alone.metrics["pxap"], abs_tol=1e-6)
    assert saved["mask_split"] == "test_mask"
    # The baseline arm trained without hiding, the other with the config's hiding.
    cam_cfg = json.loads((out / "cam_seed0" / "config.json").read_text())
    has_cfg = json.loads((out / "has_seed0" / "config.json").read_text())
    assert cam_cfg["hiding"]["hide_prob"] == 0.0 and has_cfg["hiding"]["grid_sizes"] == [8]
    # The gallery shows the same (first) test images under both arms.
    assert saved["gallery_image_ids"] == [f"test/{i % 2}/{i}.png" for i in range(2)]
    import cv2

    gallery = cv2.imread(str(out / "gallery.png"))
    assert gallery.shape[:2] == (26 + 192 + 22 + 20 + 30 + 22, 2 * (2 * 192 + 4 + 10) + 10)
    assert cv2.imread(str(out / "iou.png")) is not None
    assert (out / "saved_model" / "saved_model.pb").exists()
    mean, std = saved["summary"]["cam"]["object"]["top1_cls"]
    assert std == 0.0 and math.isclose(mean, saved["runs"]["cam"]["0"]["object"]["top1_cls"])
    rows, _ = table_rows(result.table)
    assert rows[0] == ["Method", "Top-1 Clas", "GT-known Loc", "Top-1 Loc", "MaxBoxAccV2",
                       "PxAP", "GT-known Loc vs part", "Train time/epoch vs GAP"]
    cam = saved["runs"]["cam"]["0"]
    # One seed: the values alone, no spread claimed.
    assert rows[1] == ["GAP (baseline)"] + [f"{cam['object'][k]:.2f}" for k in (
        "top1_cls", "gt_known_loc", "top1_loc", "max_box_acc_v2", "pxap")] + [
        f"{cam['part']['gt_known_loc']:.2f}", "1.00x"]
    assert rows[2][0] == "Hide-and-Seek" and len(rows) == 3
    assert "1 seed: no spread measured" in result.table.splitlines()[-1]
    assert saved["table"] == result.table

    # The same command again reuses both finished runs: same numbers, no training.
    capsys.readouterr()
    again = comparison.run_comparison(_base(root, tmp_path / "ignored"), output_dir=str(out),
                                      seeds=(0,), gallery_size=0, export=False, verbose=2)
    printed = capsys.readouterr().out.splitlines()
    assert [l for l in printed if l.startswith(("reusing", "training", "  epoch"))] == [
        f"reusing GAP (baseline), seed 0: 1/2 (finished, {out / 'cam_seed0'})",
        f"reusing Hide-and-Seek, seed 0: 2/2 (finished, {out / 'has_seed0'})"]
    for arm in ("cam", "has"):
        assert again.runs[arm][0]["object"] == result.runs[arm][0]["object"]
        # The training time is the one recorded when the run trained.
        assert again.runs[arm][0]["train_seconds_per_epoch"] == \
            result.runs[arm][0]["train_seconds_per_epoch"]


def test_compare_runs_the_given_methods_and_reports_relative_train_time(tmp_path,
                                                                         table_rows):
    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4)
    config = dataclasses.replace(_base(root, tmp_path / "ignored", grid_sizes=(8,)),
                                 steps_per_epoch=1)
    out = tmp_path / "cmp"
    result = comparison.run_comparison(config, output_dir=str(out), seeds=(0,),
                                       gallery_size=2, verbose=0, export=False,
                                       methods=("cam", "acol", "cutmix"))
    rows, _ = table_rows(result.table)
    assert [r[0] for r in rows[1:]] == ["GAP (baseline)", "ACoL", "CutMix"]
    assert rows[0][-1] == "Train time/epoch vs GAP" and rows[1][-1] == "1.00x"
    times = {m: json.loads((out / f"{m}_seed0" / "train_time.json").read_text())
             for m in ("cam", "acol", "cutmix")}
    ratio = times["acol"]["seconds_per_epoch"] / times["cam"]["seconds_per_epoch"]
    assert rows[2][-1] == f"{ratio:.2f}x"
    acol = json.loads((out / "acol_seed0" / "config.json").read_text())
    assert acol["wsol"]["method"] == "acol" and acol["hiding"]["hide_prob"] == 0.0
    assert (out / "iou_acol.png").exists() and (out / "gallery.png").exists()
    with pytest.raises(ValueError, match="methods: expected names among"):
        comparison.run_comparison(config, output_dir=str(out), methods=("cam", "foo"))


@pytest.mark.slow
def test_compare_script_console_is_quiet_and_one_line_per_epoch(tmp_path):
    """scripts/compare.py with default flags, output to a pipe: no TensorFlow or absl INFO
    lines, a header per arm, one line per epoch, the table without a spread."""
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT, subprocess_env as _env

    root = make_wsol_folder(str(tmp_path / "d"), n_train=8, n_test=4)
    env = _env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # as a user's shell has it
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "compare.py"), "--model=tiny_gap",
         "--model_arg=widths=(8,16)", f"--source={root}", "--image_size=32", "--batch_size=4",
         "--epochs=2", "--grid_sizes=8", "--strategy=one_device", "--eval_every=0",
         "--gallery_size=2", "--noexport", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    noisy = [l for l in lines if l[:1] in "IWE" and l[1:5].isdigit() or l.startswith("INFO")
             or "absl::InitializeLog" in l or "oneDNN" in l or "cuda" in l.lower()]
    assert not noisy, noisy
    out = proc.stdout.splitlines()
    assert [l for l in out if l.startswith("training ")] == [
        f"training GAP (baseline), seed 0: 1/2 (2 epochs, {tmp_path / 'out' / 'cam_seed0'})",
        f"training Hide-and-Seek, seed 0: 2/2 (2 epochs, {tmp_path / 'out' / 'has_seed0'})"]
    epochs = [l.strip().split()[1] for l in out if l.strip().startswith("epoch ")]
    assert epochs == ["1/2", "2/2", "1/2", "2/2"]
    assert any(l.startswith("| Hide-and-Seek") for l in out) and "±" not in proc.stdout
