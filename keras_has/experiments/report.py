"""What an experiment reports: mean / std over seeds, one Markdown table, results.json.

- `summarize(runs)`: `runs[arm][seed]` is a run's record (a dict of numbers, of nested
  dicts of numbers, of None, or of other values that are not summarized); the summary
  has the same shape per arm, every number replaced by `(mean, population std)` over
  the seeds that have it (None where no seed has one; strings and lists left out).
- `format_table(summary, rows, columns, num_seeds)`: one row per arm, one `Column`
  per figure, as a Markdown table (`markdown_table`), and a note under it (after a
  blank line, so that Markdown ends the table there) that says what the numbers are and
  over how many seeds.
- `write_results(path, payload)`: results.json, written atomically.

Pure Python and NumPy: no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_has.util.files import atomic_write_json, jsonable

__all__ = ["Column", "summarize", "format_cell", "markdown_table", "format_table",
           "spread_note", "write_results"]


@dataclasses.dataclass(frozen=True)
class Column:
    """One figure of the results table.

    Args:
      title: the header cell.
      path: keys from an arm's summary to the `(mean, std)` of the figure, e.g.
        `("object", "top1_cls")`.
      optional: left out of the table when no row has a value.
      relative: each cell is the row's mean divided by the first row's, as `1.23x`
        (e.g. training time relative to the baseline); left out when the first row has
        no value.
    """

    title: str
    path: tuple
    optional: bool = False
    relative: bool = False

    def __post_init__(self):
        if not isinstance(self.title, str) or not self.title:
            raise ValueError(f"title: expected a non-empty string, received {self.title!r}")
        path = (self.path,) if isinstance(self.path, str) else tuple(self.path)
        if not path:
            raise ValueError(f"path: expected one or more keys, received {self.path!r}")
        object.__setattr__(self, "path", path)

    def stat(self, arm_summary):
        """The `(mean, std)` at `path` in one arm's summary, or None."""
        value = arm_summary
        for key in self.path:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return value if isinstance(value, tuple) else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


_LEFT_OUT = object()  # a value summarize does not summarize (string, list, mixed types)


def _stats(values):
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(_is_number(v) for v in present):
        data = np.asarray(present, dtype=np.float64)
        return float(np.mean(data)), float(np.std(data))
    if all(isinstance(v, dict) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        out = {}
        for key in keys:
            stat = _stats([v.get(key) for v in present])
            if stat is not _LEFT_OUT:
                out[key] = stat
        return out
    return _LEFT_OUT


def summarize(runs: dict) -> dict:
    """`{arm: summary of its records over seeds}` (see the module docstring), in the
    order of `runs`; an arm without runs is left out."""
    out = {}
    for arm, by_seed in runs.items():
        if not by_seed:
            continue
        stats = _stats(list(by_seed.values()))
        out[arm] = None if stats is _LEFT_OUT else stats
    return out


def format_cell(stat, with_std: bool) -> str:
    """`mean ± std` (or the mean alone without `with_std`), two decimals; `-` for no
    value, `nan` for a mean that is not a number."""
    if stat is None:
        return "-"
    mean, std = stat
    if not math.isfinite(mean):
        return "nan"
    return f"{mean:.2f} ± {std:.2f}" if with_std else f"{mean:.2f}"


def _escape(cell) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


def markdown_table(header, rows, align=None) -> str:
    """A Markdown (GitHub) table: a header row, a delimiter row and one row per entry of
    `rows`, every cell padded to its column's width so that it also reads on a console.

    Args:
      header: the column titles.
      rows: lists of cells, as many as `header` has (shorter rows are padded with empty
        cells).
      align: per column `"left"` or `"right"` (default: the first left, the others
        right, as numbers are).

    Raises:
      ValueError: a row longer than the header, or an unknown alignment.
    """
    header = [_escape(c) for c in header]
    width = len(header)
    if align is None:
        align = ["left"] + ["right"] * (width - 1)
    align = list(align)
    if len(align) != width or any(a not in ("left", "right") for a in align):
        raise ValueError(f"align: expected {width} entries of 'left' or 'right', "
                         f"received {align}")
    body = []
    for row in rows:
        row = [_escape(c) for c in row]
        if len(row) > width:
            raise ValueError(f"rows: expected at most {width} cells per row, received "
                             f"{len(row)}: {row}")
        body.append(row + [""] * (width - len(row)))
    sizes = [max([3, len(header[i])] + [len(r[i]) for r in body]) for i in range(width)]

    def line(cells):
        padded = [c.ljust(w) if a == "left" else c.rjust(w)
                  for c, w, a in zip(cells, sizes, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join("-" * w if a == "left" else "-" * (w - 1) + ":"
                             for w, a in zip(sizes, align)) + " |"
    return "\n".join([line(header), rule] + [line(r) for r in body])


def spread_note(num_seeds: int, one_seed_hint: str = "") -> str:
    """`mean ± std over N seeds`, or for one seed that no spread was measured."""
    if num_seeds > 1:
        return f"mean ± std over {num_seeds} seeds"
    return "1 seed: no spread measured" + (f", {one_seed_hint}" if one_seed_hint else "")


def format_table(summary: dict, rows, columns, num_seeds: int, *, extra_rows=(),
                 units: str = "percent", detail: str = "Loc at IoU >= 0.5",
                 one_seed_hint: str = "") -> str:
    """The results table of an experiment and the line under it.

    Args:
      summary: `summarize`'s output.
      rows: `(arm, title)` pairs in table order (arms missing from `summary` are left
        out).
      columns: `Column`s.
      num_seeds: seeds per arm: the cells show `mean ± std` with two or more, the
        value alone with one.
      extra_rows: `(title, {column title: cell text})` rows added below the arms (e.g.
        the linear probe's Top-1); columns they do not name are empty.
      units, detail, one_seed_hint: the note under the table, `(units; spread; detail)`.

    Returns:
      The Markdown table, a blank line and the note, one string.
    """
    rows = [(arm, title) for arm, title in rows if arm in summary]
    kept = []
    for column in columns:
        stats = [column.stat(summary[arm]) for arm, _ in rows]
        if column.relative and (not stats or not stats[0] or not stats[0][0]):
            continue
        if column.optional and all(s is None for s in stats):
            continue
        kept.append((column, stats))
    header = ["Method"] + [column.title for column, _ in kept]
    body = []
    for i, (_, title) in enumerate(rows):
        cells = [title]
        for column, stats in kept:
            if column.relative:
                cells.append("-" if stats[i] is None else f"{stats[i][0] / stats[0][0]:.2f}x")
            else:
                cells.append(format_cell(stats[i], num_seeds > 1))
        body.append(cells)
    for title, cells in extra_rows:
        unknown = set(cells) - {column.title for column, _ in kept}
        if unknown:
            raise ValueError(f"extra_rows: {title!r} names columns {sorted(unknown)} that "
                             f"the table does not have ({header[1:]})")
        body.append([title] + [cells.get(column.title, "") for column, _ in kept])
    note = "; ".join(p for p in (units, spread_note(num_seeds, one_seed_hint), detail) if p)
    # A blank line ends the table: Markdown would read the note as one more row.
    return markdown_table(header, body) + f"\n\n({note})"


def write_results(path: str, payload: dict) -> str:
    """Writes `payload` (made JSON-safe: tuples as lists, NumPy numbers as numbers,
    non-string keys as strings) to `path` atomically; returns `path`."""
    atomic_write_json(path, jsonable(payload))
    return path
