"""Post-hoc CAM methods beside trained models: replayed maps give the figures of a
direct evaluation; one row per model, method and normalisation."""
import keras
import numpy as np
import pytest

from keras_has.experiments import posthoc, report
from keras_has.serve import evaluate as serve_evaluate
from tests.helpers import make_wsol_folder

SIZE = 32


def _save_model(path, seed):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32")
                       for w in model.get_weights()])
    model.save(path)
    return str(path)


def _runs(tmp_path, n_test):
    """A WSOL folder and two run folders (a model each, preprocessing `none` recorded)."""
    from keras_has.data.preprocessing import make_preprocessing
    from keras_has.train import run_folder

    folder = make_wsol_folder(str(tmp_path / "d"), n_train=4, n_test=n_test, size=SIZE)
    paths = []
    for seed in (0, 1):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        paths.append(_save_model(run / "model.keras", seed))
        run_folder.write_preprocessing(str(run), make_preprocessing("none"), (0, 0, 0),
                                       (1, 1, 1), "train", None)
    return folder, paths


def test_replayed_maps_score_like_a_direct_evaluation(tmp_path):
    folder, paths = _runs(tmp_path, n_test=6)
    arms = [posthoc.CamArm("A", tuple(paths), ("cam", "gradcam"))]
    rows, runs = posthoc.compare_cam_methods(arms, folder, normalizations=("minmax", "ivr"),
                                             batch_size=4)
    assert [key for key, _ in rows] == ["A|cam|minmax", "A|cam|ivr", "A|gradcam|minmax",
                                        "A|gradcam|ivr"]
    for (method, norm) in (("cam", "minmax"), ("gradcam", "ivr")):
        for seed, path in enumerate(paths):
            direct, _, _ = serve_evaluate.evaluate_model_file(
                path, folder, cam_method=method, cam_normalization=norm, batch_size=4,
                verbose=0, num_examples=0)
            assert runs[f"A|{method}|{norm}"][seed]["boxes"] == pytest.approx(direct.metrics)
    table = report.format_table(report.summarize(runs), rows, posthoc.TABLE_COLUMNS, 2)
    assert "A: gradcam, ivr" in table and "PxAP" not in table  # no mask split here


def test_replay_refuses_other_labels():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    cams = posthoc.ReplayedCams(model, "gradcam")
    images = np.ones((2, 8, 8, 3), np.float32)
    first = cams.forward(images, [0, 1])
    again = cams.replay().forward(images, [0, 1])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="other labels"):
        cams.replay().forward(images, [1, 1])


def test_top1_loc_with_another_classifier(tmp_path):
    folder, paths = _runs(tmp_path, n_test=8)
    own = {p: serve_evaluate.evaluate_model_file(p, folder, verbose=0, num_examples=0)[0]
           for p in paths}
    # The same model twice: its own Top-1 Loc.
    for path in paths:
        assert posthoc.top1_loc_with_classifier(path, path, folder) == pytest.approx(
            own[path].metrics["top1_loc"])
    # Boxes of one, classes of the other: at most each's own GT-known Loc / Top-1 Clas.
    mixed = posthoc.top1_loc_with_classifier(paths[0], paths[1], folder)
    assert mixed <= own[paths[0]].metrics["gt_known_loc"] + 1e-9
    assert mixed <= own[paths[1]].metrics["top1_cls"] + 1e-9


def test_gallery_shows_each_columns_own_maps_of_the_same_images(tmp_path):
    import cv2

    from keras_has.data.preprocessing import make_preprocessing
    from keras_has.experiments import figures
    from keras_has.localize.evaluation import run_localization

    import os
    import shutil

    folder, paths = _runs(tmp_path, n_test=6)
    # A part split of the same images (here: the object boxes again), as pets3's test_head.
    shutil.copytree(os.path.join(folder, "metadata", "test"),
                    os.path.join(folder, "metadata", "test_head"))
    arms = [posthoc.CamArm("A", (paths[0],), ("cam", "gradcam")), posthoc.CamArm("B", (paths[1],))]
    written = posthoc.write_gallery(arms, folder, str(tmp_path / "g"), num_examples=3,
                                    batch_size=4)
    assert written[0].endswith("gallery.png")
    # The reference: each model evaluated directly, its first 3 images kept.
    from keras_has import data

    examples, ious = {}, {}
    for title, path, method in (("A: cam", paths[0], "cam"), ("A: gradcam", paths[0], "gradcam"),
                                ("B", paths[1], "cam")):
        model, _ = serve_evaluate.load_for_evaluation(path, fold_batch_norm=False)
        result = run_localization(model, data.make_eval_dataset(
            folder, SIZE, 4, preprocessing=make_preprocessing("none")),
            cam_method=method, num_examples=3, verbose=0)
        examples[title], ious[title] = result.examples, result.ious
    expected = figures.write_figures(examples, ious, {k: k for k in examples},
                                     make_preprocessing("none"), str(tmp_path / "ref"),
                                     part_boxes=examples["A: cam"]["boxes"])
    got, want = cv2.imread(written[0]), cv2.imread(expected[0])
    assert got.shape == want.shape and got.shape[1] > got.shape[0] / 2
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="num_examples"):
        posthoc.write_gallery(arms, folder, str(tmp_path / "h"), num_examples=0)
