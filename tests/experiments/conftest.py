"""Fixtures of the experiment tests: a Markdown table read back by a Markdown parser."""
import pytest


def _table_rows(text):
    """The cells of the first table in Markdown `text`, row by row (header first), as a
    CommonMark parser with the GitHub table extension reads them, and the columns'
    alignments; `([], [])` when the text holds no table."""
    from markdown_it import MarkdownIt  # installed with keras (rich)

    rows, row, align = [], None, []
    for token in MarkdownIt("commonmark").enable("table").parse(text):
        if token.type == "tr_open":
            row = []
        elif token.type == "th_open":
            style = token.attrGet("style") or ""
            align.append("right" if "right" in style else "left")
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            rows.append(row)
            row = None
    return rows, align


@pytest.fixture
def table_rows():
    return _table_rows
