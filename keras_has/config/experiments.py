"""Configuration of the experiments (`keras_has.experiments.runner` configurations:
comparison of methods, the fine-tuning benchmark, hyperparameter search); the training
settings of each run are a `TrainConfig`."""
from __future__ import annotations

import dataclasses

from keras_has.config.checks import fail as _fail
from keras_has.config.checks import is_int as _is_int
from keras_has.config.checks import is_number as _is_number

__all__ = ["ComparisonConfig", "BenchmarkConfig", "TuneConfig", "ARM_ALIASES",
           "BENCHMARK_ARMS", "resolve_arms"]

# Old names of arms, still accepted: the GAP baseline was the benchmark's arm "gap".
ARM_ALIASES = {"gap": "cam"}
BENCHMARK_ARMS = ("cam", "has")  # the fine-tuning benchmark's arms, in table order


def resolve_arms(names, allowed, flag: str = "arms") -> tuple[str, ...]:
    """`names` as a tuple of canonical arm names (`ARM_ALIASES` mapped: `gap` -> `cam`).

    Raises ValueError naming `flag` for none, a name outside `allowed` (or its
    aliases) or a name given twice (an alias and its name count as the same).
    """
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        _fail(flag, names, f"a list of names among {list(allowed)}")
    given = [str(n).strip() for n in names if str(n).strip()]
    resolved = tuple(ARM_ALIASES.get(n, n) for n in given)
    aliases = [f"{a} for {c}" for a, c in ARM_ALIASES.items() if c in allowed]
    known = f"{list(allowed)}" + (f" ({', '.join(aliases)})" if aliases else "")
    if not resolved or any(n not in allowed for n in resolved):
        _fail(flag, given, f"one or more names among {known}")
    if len(set(resolved)) != len(resolved):
        _fail(flag, given, f"distinct names among {known}")
    return resolved


def _check_seeds(seeds) -> tuple[int, ...]:
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        _fail("seeds", seeds, "a list of integers >= 0")
    seeds = tuple(seeds)
    if not seeds or any(not _is_int(v) or v < 0 for v in seeds):
        _fail("seeds", list(seeds), "one or more integers >= 0")
    if len(set(seeds)) != len(seeds):
        _fail("seeds", list(seeds), "no repeated seeds")
    return seeds


def _check_cam_threshold(value) -> None:
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        _fail("cam_threshold", value, "a fraction of the CAM's max in [0, 1]")


@dataclasses.dataclass(frozen=True)
class ComparisonConfig:
    """How `keras_has.experiments.comparison.run_comparison` runs its arms (the training
    settings are a `TrainConfig`).

    Args:
      seeds: one training run per arm and seed (distinct integers >= 0).
      cam_threshold: CAM threshold (fraction of max) of GT-known / Top-1 Loc (the paper:
        0.2 for AlexNet-GAP, 0.3 for GoogLeNet-GAP).
      part_split: where boxes of the most discriminative part come from: 'auto' (the
        synthetic data's part boxes, or the WSOL split <eval_split>_head when present),
        empty for none, or a split name.
      mask_split: where masks of the evaluation images come from, for PxAP: 'auto' (the
        WSOL split <eval_split>_mask when present, e.g. pets3's test_mask), empty for
        none, or a split name.
      gallery_size: test images in gallery.png, the first ones of the evaluation split
        (0: neither gallery.png nor iou.png).
      export: export the first seed's Hide-and-Seek model (else the last method's) as a
        SavedModel.
      methods: WSOL methods to compare, in table order (keras_has.methods.list_methods():
        cam, has, acol, spg, adl, cutmix); the first is the reference of the relative
        training time. Hiding flags apply to has only; each method's own flags to it.
    """

    seeds: tuple[int, ...] = (0,)
    cam_threshold: float = 0.2
    part_split: str | None = "auto"
    mask_split: str | None = "auto"
    gallery_size: int = 8
    export: bool = True
    methods: tuple[str, ...] = ("cam", "has")

    def __post_init__(self):
        names = tuple(str(m).strip() for m in self.methods if str(m).strip())
        if not names:
            _fail("methods", list(self.methods), "at least one method")
        if len(set(names)) != len(names):
            _fail("methods", list(names), "distinct methods")
        object.__setattr__(self, "methods", names)
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        _check_cam_threshold(self.cam_threshold)
        for name in ("part_split", "mask_split"):
            value = getattr(self, name)
            if value == "":
                object.__setattr__(self, name, None)
            elif value is not None and not isinstance(value, str):
                _fail(name, value, "'auto', a split name or empty")
        if not _is_int(self.gallery_size) or self.gallery_size < 0:
            _fail("gallery_size", self.gallery_size, "an integer >= 0")
        if not isinstance(self.export, bool):
            _fail("export", self.export, "a boolean")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """How `keras_has.experiments.finetune_benchmark.run_benchmark` runs its arms
    (`scripts/benchmark_finetune.py`; the training settings are a `TrainConfig`).

    Args:
      seeds: one fine-tuning run per arm and seed (distinct integers >= 0).
      body_split: split with the whole-object (body) boxes of the test images.
      head_split: split with the part (head) boxes of the same images (empty: none).
      mask_split: split with the masks of the same images, for PxAP (empty: none).
      cam_threshold: CAM threshold (fraction of max) of GT-known / Top-1 Loc.
      gallery_size: test images in gallery.png (0: none).
      linear_probe: fit the linear probe on the frozen pretrained features.
      arms: arms to run, in table order: cam (the GAP baseline; gap is accepted for it)
        and has (e.g. only has, to try hiding settings against an earlier baseline).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    body_split: str = "test"
    head_split: str | None = "test_head"
    mask_split: str | None = "test_mask"
    cam_threshold: float = 0.2
    gallery_size: int = 8
    linear_probe: bool = True
    arms: tuple[str, ...] = BENCHMARK_ARMS

    def __post_init__(self):
        object.__setattr__(self, "seeds", _check_seeds(self.seeds))
        if not isinstance(self.body_split, str) or not self.body_split:
            _fail("body_split", self.body_split, "the split with the object boxes")
        for name in ("head_split", "mask_split"):
            value = getattr(self, name)
            if value == "":
                object.__setattr__(self, name, None)
            elif value is not None and not isinstance(value, str):
                _fail(name, value, "a split name or empty")
        _check_cam_threshold(self.cam_threshold)
        if not _is_int(self.gallery_size) or self.gallery_size < 0:
            _fail("gallery_size", self.gallery_size, "an integer >= 0")
        if not isinstance(self.linear_probe, bool):
            _fail("linear_probe", self.linear_probe, "a boolean")
        object.__setattr__(self, "arms", resolve_arms(self.arms, BENCHMARK_ARMS))


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """How `keras_has.experiments.tuning.run_tuning` searches (the training settings are a
    `TrainConfig`).

    Args:
      tune_method: method whose hyperparameters are searched (keras_has.methods).
      tune_space: candidate values of hyperparameters as name=v1;v2;... entries (a
        MethodConfig field, a hiding setting (hide_prob, hide_from_epoch, hide_until_epoch
        (0: none), hide_anneal (0 or 1), hide_share), epochs or lr); empty: the method's
        default space.
      tune_lrs: candidate first learning rates (the schedule is scaled); empty: the
        flagfile's schedule only.
      tune_trials: grid points to train, drawn with tune_seed (0: the whole grid).
      tune_seed: seed of the trial draw.
      tune_split: split the trials are scored on (empty: validation or val, whichever
        the source has; never the test split).
      cam_threshold: CAM threshold of GT-known / Top-1 Loc in trials.csv.
    """

    tune_method: str = "acol"
    tune_space: tuple[str, ...] = ()
    tune_lrs: tuple[float, ...] = ()
    tune_trials: int = 0
    tune_seed: int = 0
    tune_split: str | None = None
    cam_threshold: float = 0.2

    def __post_init__(self):
        if not isinstance(self.tune_method, str) or not self.tune_method:
            _fail("tune_method", self.tune_method, "a method name")
        if not _is_int(self.tune_trials) or self.tune_trials < 0:
            _fail("tune_trials", self.tune_trials, "an integer >= 0 (0: the whole grid)")
        if self.tune_split == "":
            object.__setattr__(self, "tune_split", None)
        _check_cam_threshold(self.cam_threshold)
        object.__setattr__(self, "tune_space", tuple(self.tune_space))
        self.space()  # checks the entries

    def space(self) -> dict | None:
        """`{name: (values...)}` of `tune_space`, None when empty."""
        if not self.tune_space:
            return None
        out = {}
        for item in self.tune_space:
            key, sep, values = str(item).partition("=")
            try:
                parsed = tuple(float(v) for v in values.split(";") if v.strip())
            except ValueError:
                parsed = ()
            if not sep or not key or not parsed:
                _fail("tune_space", item, "name=v1;v2;... with numbers")
            out[key] = parsed
        return out
