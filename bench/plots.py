"""Figures derived from results.json (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.io import write_bytes  # noqa: E402


def save(fig, path: Path) -> str:
    """Render to memory, then bench's one writer: savefig(path) would write through a link named like the
    figure, into a device, or leave half a PNG."""
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path.name


def grid(n: int, width: float = 4.2, height: float = 3.0, sharey: bool = False):
    """n panels, up to 3 a row; ``sharey`` when the panels are compared with each other."""
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=sharey)
    flat = axes.ravel().tolist()
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def integer_ticks(ax) -> None:
    """Block indices and k are integers: no 2.5 on the axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def fit_ylim(ax, values, pad: float = 0.15) -> None:
    """A y-range around the data (not from 0), so differences of a few points stay visible."""
    import numpy as np

    v = np.asarray([x for x in np.ravel(values) if x is not None and np.isfinite(x)], dtype=float)
    if len(v):
        lo, hi = float(v.min()), float(v.max())
        margin = max(hi - lo, 0.02) * pad
        ax.set_ylim(lo - margin, hi + margin)


def legend_outside(ax) -> None:
    """Legend below the axes: it never covers bars or lines."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
