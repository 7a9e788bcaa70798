"""A training run's folder: one owner at a time, and resumed only with its own settings.

`RunLock(folder)` is an advisory lock (`fcntl.flock` on `folder/.lock`, which holds the
owner's pid). The kernel releases it when the owner exits in any way, SIGKILL included,
so a killed run never leaves a stale lock; a second process that wants the folder
fails at once with `RunFolderBusy`, naming the folder and the holder's pid. On systems
without `fcntl` (Windows) the lock is a no-op.

`check_resume(config_path, config_dict, overwrite)` compares a new run's settings with
the `config.json` already in the folder: settings that may change between a run and its
resumption (`RESUMABLE_KEYS`: more epochs, verbosity, evaluation frequency, where it
runs) are ignored; any other difference fails with a message listing them, unless
`overwrite`, which moves the old folder aside (`<folder>.old-<time>`) first.

The layout (`run_paths`), written by `keras_has.train.trainer` and read by evaluation, export
and prediction, so that none of them has to reach the training data again:

```
config.json          the TrainConfig (`read_config`)
preprocessing.json   the input preprocessing and the training split's statistics
                     (`write_preprocessing`, `read_preprocessing`)
normalization.json   the training split's RGB mean and std (`read_normalization`)
class_names.txt      one class name per line, when the source names its classes
model.keras, best.keras, checkpoints/, backup/, training_log.csv, tensorboard/
```

`read_run_settings(model_path=...)` gathers what serving a run's model needs (image size,
preprocessing, class names, config) from its folder, explicit values winning.
"""
from __future__ import annotations

import json
import os
import shutil
import time

from keras_has.util.files import atomic_path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunFolderBusy", "RunLock", "restore_intact_backup", "BACKUP_WEIGHTS", "BACKUP_METADATA", "RESUMABLE_KEYS", "config_differences",
           "check_resume", "run_paths", "find_run_folder", "read_config",
           "write_preprocessing", "read_preprocessing", "read_normalization",
           "read_run_preprocessing",
           "write_class_names", "read_class_names", "class_names_arg",
           "read_run_settings"]

LOCK_NAME = ".lock"
# Dotted TrainConfig keys that a resumed run may change.
RESUMABLE_KEYS = ("epochs", "verbose", "eval_every", "strategy", "tpu", "output_dir",
                  "data.eval_batch_size", "best_metric", "best_mode")


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """Holds `folder/.lock` for the duration of a `with` block (see the module docstring).

    Args:
      folder: the run folder (created if missing; removed again on a failed run that
        wrote nothing else into a folder it created).
    """

    def __init__(self, folder):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd = None
        self._created = False

    def __enter__(self):
        self._created = not os.path.exists(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderBusy(
                    f"output_dir: {self.folder} is in use by another process (pid "
                    f"{holder}); wait for it to finish or choose another output_dir"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, exc_type, exc, tb):
        fd, self._fd = self._fd, None
        if fd is None:
            return False
        if exc_type is not None and self._created and os.listdir(self.folder) == [LOCK_NAME]:
            os.remove(self.path)  # a rejected run leaves nothing behind
            os.close(fd)
            os.rmdir(self.folder)
            return False
        os.close(fd)  # closing the descriptor releases the lock
        return False


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "model_kwargs":
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(old: dict, new: dict, ignore=RESUMABLE_KEYS) -> list[str]:
    """`"key: old -> new"` for every setting that differs, outside `ignore` (dotted keys)."""
    a = _flatten(json.loads(json.dumps(old)))
    b = _flatten(json.loads(json.dumps(new)))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}"
            for k in sorted(set(a) | set(b))
            if k not in ignore and k != "version" and a.get(k) != b.get(k)]


def check_resume(folder, config_dict: dict, overwrite: bool = False) -> str | None:
    """Checks a run folder's `config.json` against `config_dict` before anything is written.

    Returns None, or with `overwrite` and a folder that holds a run, the path the old
    folder was moved to (the caller then starts afresh in `folder`).

    Raises:
      ValueError: the folder holds a run with other settings and `overwrite` is False.
    """
    folder = os.path.abspath(os.fspath(folder))
    path = os.path.join(folder, "config.json")
    if not os.path.exists(path):
        return None
    if overwrite:
        # Everything but the lock moves, so the lock held on `folder` stays valid.
        aside = f"{folder}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        os.makedirs(aside)
        for entry in os.listdir(folder):
            if entry != LOCK_NAME:
                os.replace(os.path.join(folder, entry), os.path.join(aside, entry))
        return aside
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"output_dir: {path} cannot be read ({e}); pass overwrite "
                         "(--overwrite) to start over") from None
    diffs = config_differences(old, config_dict)
    if diffs:
        raise ValueError(
            f"output_dir: {folder} holds a run with other settings ("
            + "; ".join(diffs) + "); resume it with its own settings, choose another "
            "output_dir, or pass overwrite (--overwrite) to start over (the old folder is "
            "moved aside)")
    return None


# --------------------------------------------------------------------------- layout
CONFIG_FILE = "config.json"
PREPROCESSING_FILE = "preprocessing.json"
NORMALIZATION_FILE = "normalization.json"
CLASS_NAMES_FILE = "class_names.txt"


BACKUP_WEIGHTS = "latest.weights.h5"  # names of Keras' BackupAndRestore; ".bkp": the epoch before
BACKUP_METADATA = "training_metadata.json"


def _backup_problem(weights: str, metadata: str) -> str | None:
    """What is wrong with one backup pair (weights file, metadata JSON), or None."""
    try:
        with open(metadata, encoding="utf-8") as f:
            epoch = json.load(f)["epoch"]
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch {epoch!r} is not an int >= 0")
    except FileNotFoundError:
        return f"{metadata} is missing"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{metadata} is not a backup record ({error})"
    try:
        import h5py

        with h5py.File(weights, "r") as f:  # read every array: a cut file fails here
            f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except FileNotFoundError:
        return f"{weights} is missing"
    except Exception as error:  # h5py raises OSError, KeyError, RuntimeError, ...
        return f"{weights} cannot be read ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    return None


def restore_intact_backup(backup_dir) -> str | None:
    """Makes `backup_dir` resumable before training starts: when the newest backup pair
    (`latest.weights.h5`, `training_metadata.json`) is damaged, the previous epoch's
    pair (`*.bkp`, kept by the backup callback) replaces it.

    Returns:
      None when there is no backup or it is intact; else a line saying what was damaged
      and from which epoch training resumes.

    Raises:
      ValueError naming the damaged file when no intact backup is left, and what to do.
    """
    backup_dir = os.fspath(backup_dir)
    weights = os.path.join(backup_dir, BACKUP_WEIGHTS)
    metadata = os.path.join(backup_dir, BACKUP_METADATA)
    if not (os.path.exists(weights) or os.path.exists(metadata)):
        return None
    problem = _backup_problem(weights, metadata)
    if problem is None:
        return None
    previous = (weights + ".bkp", metadata + ".bkp")
    if _backup_problem(*previous) is not None:
        raise ValueError(
            f"resume: {problem}, and no intact earlier backup is kept; delete {backup_dir} "
            "to restart training from epoch 1 (finished checkpoints/ stay), or pass "
            "--overwrite to start the run over")
    for source, target in zip(previous, (weights, metadata)):
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    with open(metadata, encoding="utf-8") as f:
        epoch = json.load(f)["epoch"]
    return (f"resume: {problem}; resuming from the backup of the epoch before (after "
            f"{epoch} finished epoch(s))")


def run_paths(folder) -> dict:
    """The paths of a run folder's files and subfolders, by role."""
    folder = os.fspath(folder)
    names = {"config": CONFIG_FILE, "backup": "backup", "checkpoints": "checkpoints",
             "best": "best.keras", "csv": "training_log.csv", "tensorboard": "tensorboard",
             "model": "model.keras", "normalization": NORMALIZATION_FILE,
             "preprocessing": PREPROCESSING_FILE, "class_names": CLASS_NAMES_FILE}
    return {role: os.path.join(folder, name) for role, name in names.items()}


def find_run_folder(model_path) -> str | None:
    """The run folder a model file belongs to: its own folder when that holds a
    `config.json` or `preprocessing.json`, else the folder above (a file under
    `checkpoints/`), else None."""
    folder = os.path.dirname(os.path.abspath(os.fspath(model_path)))
    for candidate in (folder, os.path.dirname(folder)):
        if any(os.path.isfile(os.path.join(candidate, name))
               for name in (CONFIG_FILE, PREPROCESSING_FILE)):
            return candidate
    return None


def _read_json(path, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the run's {what}: {error}") from None


def read_config(folder) -> dict | None:
    """The run's `config.json` as a dict, or None when the folder has none."""
    path = os.path.join(os.fspath(folder), CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    config = _read_json(path, "config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object, received {type(config).__name__}")
    return config


def write_preprocessing(folder, preprocessing, mean, std, split: str,
                        hiding_fill_value=None) -> None:
    """Records a run's input preprocessing and its training split's statistics
    (`preprocessing.json`, `normalization.json`), atomically."""
    from keras_has.util.files import atomic_write_json

    paths = run_paths(folder)
    atomic_write_json(paths["normalization"], {"mean": list(mean), "std": list(std),
                                               "split": split})
    atomic_write_json(paths["preprocessing"], {
        **preprocessing.to_json(), "dataset_mean": list(mean), "dataset_std": list(std),
        "split": split,
        "hiding_fill_value": None if hiding_fill_value is None else list(hiding_fill_value)})


def read_preprocessing(folder):
    """The `keras_has.data.preprocessing.Preprocessing` recorded in a run folder
    (`preprocessing.json`), or None when the run has none."""
    from keras_has.data.preprocessing import Preprocessing

    path = os.path.join(os.fspath(folder), PREPROCESSING_FILE)
    if not os.path.isfile(path):
        return None
    return Preprocessing.from_json(_read_json(path, "preprocessing"), where=path)


def read_normalization(folder) -> tuple | None:
    """`(mean, std)` of the run's training split as recorded (`normalization.json`),
    or None when the run has no record."""
    path = os.path.join(os.fspath(folder), NORMALIZATION_FILE)
    if not os.path.isfile(path):
        return None
    values = _read_json(path, "normalization")
    try:
        return tuple(float(v) for v in values["mean"]), tuple(float(v) for v in values["std"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: expected {{'mean': [3 numbers], 'std': [3 numbers]}}, "
                         f"received {values!r}") from None


def read_run_preprocessing(folder):
    """The input preprocessing a run recorded: its `preprocessing.json`, else the dataset
    statistics of its `normalization.json` (runs from before the former was written),
    else None."""
    preprocessing = read_preprocessing(folder)
    if preprocessing is None:
        recorded = read_normalization(folder)
        if recorded is not None:
            from keras_has.data.preprocessing import make_preprocessing

            preprocessing = make_preprocessing("dataset", *recorded)
    return preprocessing


def write_class_names(folder, names) -> None:
    """Writes `class_names.txt` (one name per line), atomically."""
    from keras_has.util.files import atomic_write_bytes

    atomic_write_bytes(run_paths(folder)["class_names"],
                       "".join(f"{name}\n" for name in names).encode("utf-8"))


def read_class_names(folder) -> tuple | None:
    """The run's class names (`class_names.txt`), or None when it has none."""
    from keras_has.util.files import read_class_names as read_names_file

    path = run_paths(folder)["class_names"]
    return read_names_file(path) if os.path.isfile(path) else None


def class_names_arg(value: str | None):
    """A class-names argument as `read_run_settings` takes it: None (empty), the path of
    a one-name-per-line file (an existing file), else a list of comma-separated names."""
    if not value:
        return None
    if os.path.isfile(value):
        return value
    return [name.strip() for name in value.split(",")]


def read_run_settings(*, model_path=None, train_config=None, image_size=None, mean=None,
                      std=None, class_names=None, source=None, split=None,
                      model_image_size=None, preprocessing_mode=None) -> dict:
    """What serving a trained model needs, from its run folder; explicit values win.

    In order: `image_size` from the run's `config.json` (`data.image_size`); the input
    preprocessing from `mean` / `std` when given, else the run's `preprocessing.json`,
    else its `normalization.json`, else measured on `source` (or the config's source)
    for a run that recorded neither; class names from `class_names`, else the run's
    `class_names.txt`, else the data source's names.

    Args:
        model_path: the `.keras` model; its run folder (`find_run_folder`) is read.
        train_config: path of a run's `config.json`, a dict of it, or None (the run
            folder's).
        image_size: int or None.
        mean, std: 3 floats each in [0, 255] pixel scale, or None.
        class_names: a sequence of names, a path to a one-name-per-line file, or None.
        source: data source name or WSOL folder to measure statistics on or take class
            names from when the run has no record of them (default: the config's).
        split: split statistics are measured on (default: the config's training split).
        model_image_size: the input size the loaded model fixes, used when neither
            `image_size` nor the training config gives one.
        preprocessing_mode: `caffe`, `tf`, `torch` or `none` (the pixels as they are):
            that preprocessing, before anything recorded; `dataset` (or None) reads on.

    Returns:
        dict with `image_size`, `preprocessing` (a `Preprocessing`), `mean`, `std`
        (its numbers), `class_names` (None if unknown), `config` (dict or None) and
        `run_dir` (None when there is no run folder).

    Raises:
        ValueError naming what is missing and where it was looked for.
    """
    from keras_has.util.files import read_class_names as read_names_file
    from keras_has.data.preprocessing import make_preprocessing

    run_dir = None if model_path is None else find_run_folder(model_path)
    config = None
    if isinstance(train_config, (str, os.PathLike)):
        path = os.fspath(train_config)
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(f"train_config: cannot read {path} as JSON: {error}") from None
        run_dir = run_dir or os.path.dirname(os.path.abspath(path))
    elif train_config is not None:
        config = dict(train_config)
    elif run_dir is not None:
        config = read_config(run_dir)
    data_config = (config or {}).get("data") or {}
    if not isinstance(data_config, dict):
        raise ValueError(
            f"train_config: expected a 'data' section (a dict), received {data_config!r}")
    if image_size is None:
        image_size = data_config.get("image_size") or model_image_size
        if image_size is None:
            raise ValueError("image_size: not given, no training config with data.image_size "
                             "beside the model, and the model's input does not fix a square "
                             "size; pass --image_size")
    if isinstance(class_names, (str, os.PathLike)):
        class_names = read_names_file(class_names)
    if class_names is None and run_dir is not None:
        class_names = read_class_names(run_dir)

    preprocessing = None
    if preprocessing_mode not in (None, "", "dataset"):
        preprocessing = make_preprocessing(preprocessing_mode)
    elif mean is not None or std is not None:
        if mean is None or std is None:
            raise ValueError("mean/std: expected both or neither, received only "
                             f"{'mean' if std is None else 'std'}")
        preprocessing = make_preprocessing("dataset", mean, std)
    elif run_dir is not None:
        preprocessing = read_run_preprocessing(run_dir)
    source = source or data_config.get("source")
    if (preprocessing is None or class_names is None) and source:
        from keras_has import data
        from keras_has.config import source_kwargs

        # The run's own source options (its val_fraction: the training split it saw).
        kwargs = source_kwargs(data_config) if source == data_config.get("source") else {}
        data_source = data.get_source(source, **kwargs)
        if preprocessing is None:
            split = split or data_config.get("train_split") or "train"
            preprocessing = make_preprocessing(
                "dataset", *data.get_normalization(data_source, split=split))
        if class_names is None:
            class_names = getattr(data_source, "class_names", None)
    if preprocessing is None:
        where = f" in {run_dir}" if run_dir is not None else ""
        raise ValueError(
            f"mean/std: not given, no preprocessing recorded{where} ({PREPROCESSING_FILE}), "
            "and no data source to measure them on (pass --mean and --std, e.g. "
            "--preprocessing=none for a model that scales its own input, --preprocessing=tf "
            "(or caffe, torch) for a keras.applications backbone's, or --source)")
    return {
        "image_size": image_size,
        "preprocessing": preprocessing,
        "mean": preprocessing.mean,
        "std": preprocessing.std,
        "class_names": None if class_names is None else tuple(class_names),
        "config": config,
        "run_dir": run_dir,
    }
