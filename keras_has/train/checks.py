"""The checks of a `TrainConfig` that need the product's registries: is the dataset,
the model and the method known, and can the method run with these settings?

`keras_has.config` checks every value that it can check alone (types, ranges, paths);
these run where the registries live, before any work: `train` calls
`check_train_config` first, and the commands call it when they build their configs.
"""
from __future__ import annotations

from keras_has import data, methods, models
from keras_has.config import TrainConfig, looks_like_path

__all__ = ["check_train_config", "check_method_names"]


def check_method_names(names, flag: str = "methods") -> tuple[str, ...]:
    """`names` as a tuple; ValueError naming `flag` for a name `keras_has.methods` lacks."""
    names = tuple(names)
    unknown = [m for m in names if m not in methods.list_methods()]
    if unknown:
        raise ValueError(f"{flag}: expected names among {methods.list_methods()}, "
                         f"received {unknown if len(unknown) > 1 else unknown[0]!r}")
    return names


def check_train_config(config: TrainConfig) -> TrainConfig:
    """Returns `config` after checking it against the registries.

    Raises:
      ValueError: `<flag>: expected ..., received ...` for an unknown source, model or
        method, or a method that cannot run with these settings (e.g. hiding flags
        with a method other than `has`).
    """
    if not looks_like_path(config.data.source):
        known = list(data.list_sources())
        if config.data.source not in known:
            raise ValueError(f"source: expected one of {known} or the path of a WSOL "
                             f"metadata folder, received {config.data.source!r}")
    known = list(models.list_models())
    if config.model not in known:
        raise ValueError(f"model: expected one of {known}, received {config.model!r}")
    if config.wsol.method != "auto" and config.wsol.method not in methods.list_methods():
        raise ValueError(f"method: expected 'auto' or one of {methods.list_methods()}, "
                         f"received {config.wsol.method!r}")
    methods.from_config(config.method_config).check(config)
    return config
