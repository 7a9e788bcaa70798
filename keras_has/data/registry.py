"""The source registry: a name (`synthetic`, the TFDS names) or a WSOL folder path ->
a `Source`. It sits above `sources` (the Source interface and WSOL folders) and
`tfds_sources` (the named TFDS sources), which do not import it."""
from __future__ import annotations

import os

from keras_has.data.sources import Source, WsolSource
from keras_has.data.tfds_sources import FACTORIES

__all__ = ["get_source", "list_sources"]


def list_sources() -> list:
    """Registered source names (a WSOL metadata folder path is also accepted)."""
    return sorted(FACTORIES)


def get_source(name_or_path, **kwargs) -> Source:
    """Returns the Source for a registered name or a WSOL metadata folder path.

    Args:
      name_or_path: a name from `list_sources()`, a folder with a `metadata/` subfolder,
        or a `Source` (returned unchanged).
      **kwargs: passed to the source's constructor (e.g. `data_dir` for TFDS sources,
        `skip_corrupt` for folders).

    Raises:
      ValueError: unknown name (the message lists the valid ones) or bad folder.
    """
    if isinstance(name_or_path, Source):
        if kwargs:
            raise ValueError(f"get_source: keyword arguments {sorted(kwargs)} cannot be "
                             "applied to an existing Source.")
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError("get_source: expected a source name, a folder path or a Source; "
                        f"received {type(name_or_path).__name__}.")
    factories = FACTORIES
    text = os.fspath(name_or_path)
    if text in factories:
        return factories[text](**kwargs)
    if os.path.isdir(text):
        if not os.path.isdir(os.path.join(text, "metadata")):
            raise ValueError(f"get_source: folder {text!r} is not a WSOL metadata folder "
                             "(expected a 'metadata' subfolder).")
        return WsolSource(text, **kwargs)
    raise ValueError(f"get_source: unknown source {text!r}; valid names are "
                     f"{sorted(factories)}, or a path to a WSOL metadata folder (none found "
                     "at that path).")
