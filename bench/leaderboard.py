"""``bench leaderboard``: one table across runs, derived from their results.json files.

The table (rows, ranking, markdown and CSV) is ``bench.leaderboard_table``; the HTML page and the LaTeX
table are ``bench.leaderboard_render``, which depends on the table module only. This module is what the
command calls: it builds the table and picks the rendering for the format asked, so neither of the two
imports the other's caller.
"""

from __future__ import annotations

from pathlib import Path

from bench.io import write_text
from bench.leaderboard_render import render_html, render_latex
from bench.leaderboard_table import build, render_csv, render_markdown, run_label  # noqa: F401  (build, run_label: re-exported)

FORMATS = ("md", "csv", "html", "latex")


def render(rows: list[dict], ablations: list[str], fmt: str, out: Path | None = None, wide: bool = False) -> str:
    """The leaderboard in ``fmt``; ``out`` (the file it will be written to) roots the HTML's report links;
    ``wide``: the LaTeX across the page (``table*``) instead of one column."""
    if fmt == "html":
        return render_html(rows, ablations, out)
    if fmt == "latex":
        return render_latex(rows, ablations, wide)
    if fmt == "csv":
        return render_csv(rows, ablations)
    if fmt == "md":
        return render_markdown(rows, ablations)
    raise ValueError(f"unknown leaderboard format {fmt!r}; one of {', '.join(FORMATS)}")


def write_or_print(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="")
    else:
        write_text(out, text)
        print(f"wrote {out}")
