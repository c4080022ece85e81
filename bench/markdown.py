"""The few helpers every text output shares (report.md, its ablation sections, leaderboard, compare, the
reports index): numbers, intervals, tables, and the escaping of what a user named (a study, an alias, an
ablation, a run folder), so that a name is shown as text and never read as markup, a link or a formula.
Imports nothing of bench but the results schema."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import quote

import numpy as np

from bench.results import Interval

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet evaluate a cell (OWASP CSV injection)
_BARE_PIPE = re.compile(r"(?<!\\)\|")


def fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_ci(iv: Interval | dict | None) -> str:
    if iv is None:
        return "—"
    iv = Interval(**iv) if isinstance(iv, dict) else iv  # an Interval or a Decision: estimate, low, high
    if iv.low is None:
        return fmt(iv.estimate)
    return f"{fmt(iv.estimate)} [{fmt(iv.low)}, {fmt(iv.high)}]"


def one_line(text: object) -> str:
    """``text`` with its line breaks made spaces: a newline would end a table row or a heading."""
    return " ".join(str(text).splitlines())


def esc(text: object) -> str:
    """A user-chosen name as markdown text: on one line, ``<``/``>``/``&`` as entities (no HTML runs),
    ``|`` as ``\\|`` (no table breaks) and ``[``/``]`` escaped (no links); a name made of letters, digits and
    ``_.-`` is unchanged."""
    text = html.escape(one_line(text), quote=False)
    return text.replace("|", r"\|").replace("[", r"\[").replace("]", r"\]")


def link_target(path: str) -> str:
    """A relative link target, percent-encoded: a name like ``javascript:x`` stays a path (``:`` encoded)."""
    return quote(one_line(path), safe="/")


def image(alt: str, target: str) -> str:
    """``![alt](target)`` for a figure named after a user's ablation."""
    return f"![{esc(alt)}]({link_target(target)})"


def _table_cell(cell: object) -> str:
    """A table cell on one line with every bare ``|`` escaped once: nothing in a cell can end it."""
    return _BARE_PIPE.sub(r"\\|", one_line(cell))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_table_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_table_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string starting with ``= + - @``, tab or CR gets a leading
    ``'``; numbers (a negative D included) and None are written as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_row(values: Iterable[object]) -> list[object]:
    return [csv_cell(v) for v in values]


# LaTeX: every character TeX reads as markup, and the three that OT1 fonts set as other glyphs (< > |)
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def latex(text: object) -> str:
    """A user-chosen name as LaTeX text: on one line (a blank line would end a table cell's paragraph), control
    characters dropped, and each of ``\\ & % $ # _ { } ~ ^ < > |`` written as the command that prints it, so
    no name can open a group, a math shift, a comment or a column; a name made of letters, digits and ``.-``
    is unchanged."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in one_line(text) if ch.isprintable())


def confidence(alpha: float) -> str:
    """An interval's level 1 − alpha as a percentage, to one decimal with trailing zeros dropped: "95", or "98.7"
    for a sequential look's Pocock level (0.0130: a 98.7% interval, not a 99% one)."""
    return f"{100 * (1 - alpha):.1f}".rstrip("0").rstrip(".")
