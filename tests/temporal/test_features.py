"""Feature-folder loader and THUMOS14 converter on tiny fake files; errors name file:line."""
import os

import numpy as np
import pytest

from keras_has.temporal.features import (FeatureFolderError, convert_thumos14,
                                         load_feature_folder)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _folder(root, videos=None, annotations=None, features=None, classes="Jump\nRun\n"):
    videos = videos if videos is not None else (
        "# id subset rate labels\n"
        "v1 validation 2.0 Jump\n"
        "v2 validation 2.0 Jump,Run\n"
        "v3 test 1.0 -\n")
    annotations = annotations if annotations is not None else (
        "v1 Jump 1.0 3.5\n"
        "v2 Run 0.0 2.0\n"
        "\n"
        "v2 Jump 2.5 4.0\n")
    features = features if features is not None else {
        "v1": np.arange(16, dtype=np.float32).reshape(8, 2),
        "v2": np.ones([10, 2], np.float64), "v3": np.zeros([3, 2], np.float32)}
    _write(os.path.join(root, "class_names.txt"), classes)
    _write(os.path.join(root, "videos.txt"), videos)
    _write(os.path.join(root, "annotations.txt"), annotations)
    os.makedirs(os.path.join(root, "features"), exist_ok=True)
    for vid, arr in features.items():
        np.save(os.path.join(root, "features", f"{vid}.npy"), arr)
    return str(root)


def test_load_valid_folder(tmp_path):
    source = load_feature_folder(_folder(tmp_path))
    assert source.class_names == ("Jump", "Run")
    assert source.feature_dim == 2
    assert sorted(source.splits) == ["test", "validation"]
    v1, v2 = source.splits["validation"]
    assert v1.video_id == "v1" and v1.labels == (0,) and v1.feature_rate == 2.0
    np.testing.assert_array_equal(v1.features, np.arange(16).reshape(8, 2))
    assert v1.features.dtype == np.float32
    assert v1.segments == ((0, 1.0, 3.5),)
    assert v2.labels == (0, 1)
    assert v2.segments == ((1, 0.0, 2.0), (0, 2.5, 4.0))  # sorted by start
    assert source.splits["test"][0].labels == ()
    assert source.ground_truth("validation") == [
        ("v1", "Jump", 1.0, 3.5), ("v2", "Run", 0.0, 2.0), ("v2", "Jump", 2.5, 4.0)]


@pytest.mark.parametrize("change, match", [
    (dict(features={"v1": np.zeros([8, 2]), "v2": np.zeros([10, 2])}),
     r"videos\.txt:4: video 'v3' has no features file"),
    (dict(features={"v1": np.zeros([8, 2, 1]), "v2": np.zeros([10, 2]),
                    "v3": np.zeros([3, 2])}), r"v1\.npy: expected features of shape \[T, D\]"),
    (dict(features={"v1": np.zeros([0, 2]), "v2": np.zeros([10, 2]),
                    "v3": np.zeros([3, 2])}), r"v1\.npy: expected T >= 1"),
    (dict(features={"v1": np.zeros([8, 2]), "v2": np.zeros([10, 3]),
                    "v3": np.zeros([3, 2])}), r"v2\.npy: expected D=2"),
    (dict(videos="v1 validation 2.0 Jump\nv2 validation 2.0 Swim\n"),
     r"videos\.txt:2: unknown class 'Swim'"),
    (dict(videos="v1 validation 2.0 Jump\nv1 test 2.0 Jump\n"), r"videos\.txt:2: .*twice"),
    (dict(videos="v1 validation fast Jump\n"), r"videos\.txt:1: feature_rate must be a number"),
    (dict(videos="v1 validation 0 Jump\n"), r"videos\.txt:1: feature_rate must be > 0"),
    (dict(videos="v1 validation Jump\n"), r"videos\.txt:1: expected"),
    (dict(annotations="v1 Jump 1.0 3.5\nv1 Jump 2.0 9.0\n"),
     r"annotations\.txt:2: segment \[2.0, 9.0\] s ends after video 'v1'"),
    (dict(annotations="v1 Jump -1.0 3.5\n"), r"annotations\.txt:1: expected 0 <= t_start"),
    (dict(annotations="v1 Jump 3.0 2.0\n"), r"annotations\.txt:1: expected 0 <= t_start"),
    (dict(annotations="v1 Swim 1.0 2.0\n"), r"annotations\.txt:1: unknown class 'Swim'"),
    (dict(annotations="v9 Jump 1.0 2.0\n"), r"annotations\.txt:1: video 'v9' is not in"),
    (dict(annotations="v1 Run 1.0 2.0\n"), r"annotations\.txt:1: class 'Run' is not among"),
    (dict(annotations="v1 Jump 1.0 nan\n"), r"annotations\.txt:1: t_end must be finite"),
    (dict(classes="Jump\nJump\n"), r"class_names\.txt:2: class 'Jump' is listed twice"),
    (dict(features={"v1": np.zeros([8, 2]), "v2": np.zeros([10, 2]),
                    "v3": np.array([[0, 0], [0, np.nan], [1, 1]])}),
     r"v3\.npy: expected finite features, received NaN or Inf in frame 1"),
    (dict(features={"v1": np.zeros([8, 2]), "v2": np.full([10, 2], np.inf),
                    "v3": np.zeros([3, 2])}), r"v2\.npy: .*NaN or Inf in frame 0"),
])
def test_bad_input_names_file_and_line(tmp_path, change, match):
    root = _folder(tmp_path, **change)
    with pytest.raises(FeatureFolderError, match=match):
        load_feature_folder(root)


def test_annotation_tolerance(tmp_path):
    # v1: 8 features at 2/s = 4.0 s. An end at 4.4 s is within one feature period (0.5 s)
    # and is clipped to the video's end; with tolerance 0 it is an error.
    root = _folder(tmp_path, annotations="v1 Jump 1.0 4.4\n")
    assert load_feature_folder(root).splits["validation"][0].segments == ((0, 1.0, 4.0),)
    with pytest.raises(FeatureFolderError, match="ends after"):
        load_feature_folder(root, tolerance=0.0)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FeatureFolderError, match="not found"):
        load_feature_folder(tmp_path / "nope")
    _folder(tmp_path)
    os.remove(tmp_path / "annotations.txt")
    with pytest.raises(FeatureFolderError, match=r"annotations\.txt: file not found"):
        load_feature_folder(tmp_path)


def test_convert_thumos14_then_load(tmp_path):
    ann = tmp_path / "ann"
    _write(str(ann / "HighJump_val.txt"),
           "video_validation_1 1.0 3.0\nvideo_validation_2 0.5 1.5\n")
    _write(str(ann / "LongJump_val.txt"), "video_validation_2 2.0 3.5 \n")
    _write(str(ann / "HighJump_test.txt"), "video_test_1  0.0 2.0\n")
    _write(str(ann / "Ambiguous_val.txt"), "video_validation_1 5.0 6.0\n")
    out = tmp_path / "thumos"
    counts = convert_thumos14(str(ann), str(out), feature_rate=2.0)
    assert counts == {"classes": 2, "videos": 3, "annotations": 4}
    assert (out / "class_names.txt").read_text() == "HighJump\nLongJump\n"
    assert (out / "videos.txt").read_text().splitlines() == [
        "video_test_1 test 2 HighJump",
        "video_validation_1 validation 2 HighJump",
        "video_validation_2 validation 2 HighJump,LongJump"]
    for vid in ("video_test_1", "video_validation_1", "video_validation_2"):
        np.save(out / "features" / f"{vid}.npy", np.zeros([10, 4], np.float32))
    source = load_feature_folder(str(out))
    assert [v.video_id for v in source.splits["validation"]] == ["video_validation_1",
                                                                "video_validation_2"]
    assert source.splits["validation"][1].segments == ((0, 0.5, 1.5), (1, 2.0, 3.5))


def test_convert_thumos14_bad_line(tmp_path):
    ann = tmp_path / "ann"
    _write(str(ann / "HighJump_val.txt"), "v1 1.0 3.0\nv2 1.0\n")
    with pytest.raises(FeatureFolderError, match=r"HighJump_val\.txt:2: expected"):
        convert_thumos14(str(ann), str(tmp_path / "out"), feature_rate=2.0)
    with pytest.raises(FeatureFolderError, match="no <Class>_val.txt"):
        convert_thumos14(str(tmp_path), str(tmp_path / "out"), feature_rate=2.0)


def test_random_bytes_npy_is_named_without_the_pickle_hint(tmp_path):
    root = _folder(tmp_path)
    with open(os.path.join(root, "features", "v2.npy"), "wb") as f:
        f.write(bytes(range(7, 200)))
    with pytest.raises(FeatureFolderError, match=r"v2\.npy: expected a NumPy \.npy file") as info:
        load_feature_folder(root)
    assert "pickle" not in str(info.value)


@pytest.mark.parametrize("name", ["videos.txt", "annotations.txt", "class_names.txt"])
def test_text_files_are_utf8_with_or_without_a_bom(tmp_path, name):
    root = _folder(tmp_path)
    path = os.path.join(root, name)
    text = open(path, encoding="utf-8").read()
    with open(path, "wb") as f:  # a byte-order mark, as some editors write
        f.write(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_feature_folder(root).class_names == ("Jump", "Run")
    lines = text.encode("utf-8").splitlines(keepends=True)
    bad = [line for line in lines if line.strip() and not line.startswith(b"#")][0]
    number = lines.index(bad) + 1
    lines[number - 1] = bad[:2] + b"\xff" + bad[2:]
    with open(path, "wb") as f:
        f.write(b"".join(lines))
    with pytest.raises(FeatureFolderError, match=rf"{name}:{number}: expected UTF-8 text, "
                                                 r"received the byte 0xff at column 3"):
        load_feature_folder(root)

