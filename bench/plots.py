"""Figures derived from results.json (matplotlib, Agg backend: no display needed), drawn for a manuscript.

Every figure is written three times, beside each other under one stem: a 300-dpi PNG (what report.md links
to), a PDF and an SVG (text kept as text: TrueType fonts in the PDF, ``<text>`` in the SVG, so a journal's
editor can restyle it). The files carry no creation date, so re-rendering an unchanged results.json rewrites
the same bytes.

Panels are laid out by what they compare (``panels``): one row per task, one column per architecture (or a
single column when every architecture of a task shares one panel), never wrapped; y-axes are shared only
between panels whose values are on one scale (D: every panel; an error: the panels of one task). Each panel's
y-range is robust (``robust_limits``): a value far outside its share group's bulk (a failed model's D = −4) is
drawn at the axis edge as a triangle with its value printed, so it does not flatten the others.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.io import write_bytes  # noqa: E402

DPI = 300
FORMATS = ("png", "pdf", "svg")  # the PNG first: its name is the one the report links to
# BENCH_FIGURE_FORMATS=png writes the PNG alone: the vector copies cost about 1 s per figure (a PDF embeds a font
# subset), which a test suite rendering hundreds of tiny reports does not need (tests/conftest.py sets it)
FORMATS_ENV = "BENCH_FIGURE_FORMATS"
# text stays text in the vector files (fonttype 42: TrueType embedded, not Type 3 outlines); no dates, no random ids
STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "bench",
         "hatch.linewidth": 0.6}
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None, "Producer": None},
            "svg": {"Date": None}}
FENCE = 3.0  # Tukey's 'far out' fence: 3 interquartile ranges beyond the quartiles ...
REACH = 3.0  # ... and farther from the bulk than 3 times its span: only then is a value drawn at the edge

# how a row or a model that cannot be read as the others is drawn: (legend label, hatch, face alpha)
STATES = {
    "at or below chance": ("at or below chance (margin over chance <= 0)", "xx", 0.25),
    "ill-conditioned": ("ill-conditioned (margin over chance below the threshold: D unreliable)", "////", 0.35),
    "underpowered": ("underpowered (too few seeds for a call)", "\\\\", 0.6),  # the figure says why: labels=
}
MARKERS = {"at or below chance": "X", "ill-conditioned": "D", "underpowered": "o"}


def figure_paths(png: Path) -> list[Path]:
    """The files of the figure whose PNG is ``png``: the PNG, then its PDF and SVG beside it (those of
    ``FORMATS`` that ``BENCH_FIGURE_FORMATS`` keeps, when it is set)."""
    return [png.with_suffix(f".{fmt}") for fmt in formats()]


def formats() -> tuple[str, ...]:
    """The formats a figure is written in: every one of ``FORMATS``, or those ``BENCH_FIGURE_FORMATS`` lists; the
    PNG always (the report links to it)."""
    listed = os.environ.get(FORMATS_ENV)
    if not listed:
        return FORMATS
    wanted = {f.strip().lower() for f in listed.split(",")}
    return tuple(f for f in FORMATS if f in wanted or f == "png")


def save(fig, path: Path) -> str:
    """Fit the robust y-limits, lay out, render each format to memory, then write each through bench's one
    writer (savefig(path) would write through a link named like the figure, into a device, or leave half a
    file). ``path``: the PNG; returns its name (what report.md links to)."""
    with plt.rc_context(STYLE):
        try:
            apply_limits(fig)
            fig.tight_layout()
            rendered = []
            for target in figure_paths(path):
                fmt = target.suffix[1:]
                buf = io.BytesIO()
                fig.savefig(buf, format=fmt, dpi=DPI, metadata=METADATA[fmt])
                rendered.append((target, buf.getvalue()))
        finally:
            plt.close(fig)
    for target, data in rendered:
        write_bytes(target, data)
    return path.name


# -------------------------------------------------------------------------------------------- layout
def panels(rows: Sequence[str], cols: Sequence[str] = ("",), *, share: Literal["all", "row", "none"] = "none",
           width: float = 3.4, height: float = 2.6):
    """A grid of len(rows) x len(cols) panels (rows: tasks; cols: architectures, or one column), never wrapped;
    ``share``: the y-axis of every panel ('all': the values are on one scale, e.g. D), of each row ('row': one
    task's metric) or of none. Returns (fig, {(row, col): ax})."""
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(width * len(cols), height * len(rows)), squeeze=False,
                             sharey={"all": True, "row": "row", "none": False}[share])
    return fig, {(r, c): axes[i, j] for i, r in enumerate(rows) for j, c in enumerate(cols)}


def grid(n: int, width: float = 4.2, height: float = 3.0, sharey: bool = False):
    """n panels side by side in one row (the verdict's families, a single summary panel)."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, sharey=sharey)
    return fig, axes.ravel().tolist()


def integer_ticks(ax) -> None:
    """Block indices and k are integers: no 2.5 on the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def legend_outside(ax, handles: list | None = None) -> None:
    """Legend below the axes: it never covers bars or lines (``handles``: extra entries, e.g. ``state_handles``)."""
    own, labels = ax.get_legend_handles_labels()
    for h in handles or []:
        own.append(h)
        labels.append(h.get_label())
    ncol = 1 if any(len(label) > 24 for label in labels) else 2  # long entries one a line: none is cut off
    ax.legend(own, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=ncol, frameon=False)


# ------------------------------------------------------------------------------------- robust limits
def points(ax, x: Iterable, y: Iterable) -> None:
    """Register the plotted central values (bar tops, markers) of ``ax``: they set its robust y-range, and
    one beyond it is drawn at the edge with its value."""
    _store(ax, "points").extend((float(a), float(b)) for a, b in zip(x, y) if _finite(b))


def extent(ax, *values) -> None:
    """Values the y-range should include when they are not far out (error-bar ends, a chance line)."""
    _store(ax, "extent").extend(float(v) for v in np.ravel(np.asarray(values, dtype=float)) if _finite(v))


def anchor(ax, *values) -> None:
    """Values always inside the y-range (D's 0 and 1): a reference the reader reads the rest against."""
    _store(ax, "anchor").extend(float(v) for v in values if _finite(v))


def robust_limits(values: Sequence[float], extents: Sequence[float] = (), anchors: Sequence[float] = (),
                  pad: float = 0.08) -> tuple[float, float] | None:
    """(low, high) around ``values``, widened to every anchor, padded; a value is left outside only when it is
    far out twice over: beyond ``FENCE`` interquartile ranges of the quartiles (the bulk), and farther from
    the bulk (with the anchors and the extents inside the fence) than ``REACH`` times its span — a failed
    model's D of −4 beside D's of 0 to 1, not a large real effect beside small ones. None without any value."""
    v = np.asarray([x for x in values if _finite(x)], dtype=float)
    if not len(v) and not anchors:
        return None
    pool = [*v, *extents]
    if len(v):
        q1, q3 = np.percentile(v, [25, 75])
        spread = max(q3 - q1, 0.02)
        fence = (q1 - FENCE * spread, q3 + FENCE * spread)
        bulk = [x for x in pool if fence[0] <= x <= fence[1]] + list(anchors)
    else:
        bulk = list(anchors)
    lo, hi = min(bulk), max(bulk)
    reach = REACH * max(hi - lo, 0.02)
    kept = [x for x in pool if lo - reach <= x <= hi + reach] + bulk
    lo, hi = min(kept), max(kept)
    margin = max(hi - lo, 0.02) * pad
    return lo - margin, hi + margin


def apply_limits(fig) -> None:
    """Each share group's robust y-range (its panels' registered values together), then a marker at the edge
    for every central value outside it: a triangle pointing away, with the value printed beside it."""
    done: set[int] = set()
    for ax in fig.axes:
        if id(ax) in done or not hasattr(ax, "_bench"):
            continue
        group = [a for a in ax.get_shared_y_axes().get_siblings(ax) if hasattr(a, "_bench")]
        done.update(id(a) for a in group)
        pts = [p for a in group for p in a._bench.get("points", [])]
        lim = robust_limits([y for _, y in pts], [v for a in group for v in a._bench.get("extent", [])],
                            [v for a in group for v in a._bench.get("anchor", [])])
        if lim is None:
            continue
        for a in group:
            a.set_ylim(*lim)
            for x, y in a._bench.get("points", []):
                if lim[0] <= y <= lim[1]:
                    continue
                top = y > lim[1]
                edge = lim[1] if top else lim[0]
                a.plot([x], [edge], marker="^" if top else "v", color="black", ms=6, clip_on=False, zorder=5)
                a.annotate(f"{y:.2g}", (x, edge), xytext=(4, -9 if top else 3), textcoords="offset points",
                           fontsize=6, annotation_clip=False)


def _store(ax, kind: str) -> list:
    if not hasattr(ax, "_bench"):
        ax._bench = {}
    return ax._bench.setdefault(kind, [])


def _finite(v) -> bool:
    try:
        return v is not None and bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------- marked states
def state_handles(states: Iterable[str], labels: dict[str, str] | None = None) -> list:
    """Legend entries (hatched patches) naming each state in ``states`` that occurs, in ``STATES`` order;
    ``labels``: a state's label as the figure's rows have it (an underpowered row's actual reason)."""
    from matplotlib.patches import Patch

    present = set(states)
    return [Patch(facecolor="white", edgecolor="black", hatch=hatch, label=(labels or {}).get(s, label))
            for s, (label, hatch, _) in STATES.items() if s in present]


def shade(ax, x: float, state: str | None, half: float = 0.45) -> None:
    """Hatch the column of a row or a model in ``state`` (``STATES``) behind its values; nothing for None."""
    if state is None:
        return
    _, hatch, _ = STATES[state]
    ax.axvspan(x - half, x + half, facecolor="none", edgecolor="0.6", hatch=hatch, lw=0, zorder=0)
