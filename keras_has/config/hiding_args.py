"""The one check of Hide-and-Seek's grid sizes and hiding probability (pure Python, no
TensorFlow): used by `hide_patches`, the `HideAndSeek` layer and `HidingConfig`, so the
op, the layer and the config accept exactly the same values."""
from __future__ import annotations

import math
import numbers

__all__ = ["check_grid_sizes", "check_hide_prob"]


def _is_integral(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and not (
        type(value).__name__ == "bool_")


def check_grid_sizes(grid_sizes, allow_empty: bool = False,
                     name: str = "grid_sizes") -> tuple[int, ...]:
    """`grid_sizes` as a tuple of Python ints.

    Accepted: one int or a sequence (list, tuple, 1-D array) of distinct integers >= 0
    (0 = leave the image whole); integral floats such as 16.0 (from JSON) become ints.
    Empty only when `allow_empty` (the config's "no hiding").

    Raises:
      TypeError for a value that is not a sequence of integers, ValueError for negative,
      repeated or (unless allowed) no sizes; the message names `name` and the value.
    """
    if _is_integral(grid_sizes):
        grid_sizes = (grid_sizes,)
    if isinstance(grid_sizes, (str, bytes, dict)) or not hasattr(grid_sizes, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of integers >= 0 (patch sides in "
                        f"pixels, 0 = no hiding), e.g. (16, 32, 44, 56), received "
                        f"{grid_sizes!r} of type {type(grid_sizes).__name__}")
    given = tuple(grid_sizes)
    sizes = []
    for size in given:
        if not _is_integral(size):
            if isinstance(size, numbers.Real) and not isinstance(size, bool) and math.isfinite(
                    size) and float(size).is_integer():
                size = int(size)
            else:
                raise TypeError(f"{name}: expected integers only (patch sides in pixels), "
                                f"received {size!r} in {given!r}")
        size = int(size)
        if size < 0:
            raise ValueError(f"{name}: expected integers >= 0 (0 = no hiding), received "
                             f"{size} in {given!r}")
        sizes.append(size)
    if not sizes and not allow_empty:
        raise ValueError(f"{name}: expected at least one size, e.g. (16, 32, 44, 56), "
                         f"received an empty sequence {grid_sizes!r}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"{name}: expected distinct sizes (each image draws one of them "
                         f"uniformly), received {tuple(sizes)!r}")
    return tuple(sizes)


def check_hide_prob(hide_prob, name: str = "hide_prob") -> float:
    """`hide_prob` as a float in [0, 1]; TypeError for a non-number, ValueError outside
    [0, 1] or NaN, naming `name` and the value."""
    if isinstance(hide_prob, bool) or type(hide_prob).__name__ == "bool_" or not isinstance(
            hide_prob, numbers.Real):
        raise TypeError(f"{name}: expected a probability in [0, 1], received {hide_prob!r} "
                        f"of type {type(hide_prob).__name__}")
    value = float(hide_prob)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name}: expected a probability in [0, 1], received {value!r}")
    return value
