"""The few markdown helpers every text output shares (report.md, its ablation sections, leaderboard,
compare, the reports index): numbers, intervals, tables. Imports nothing of bench but the results schema."""

from __future__ import annotations

import numpy as np

from bench.results import Interval


def fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fmt_ci(iv: Interval | dict | None) -> str:
    if iv is None:
        return "—"
    iv = Interval(**iv) if isinstance(iv, dict) else iv  # an Interval or a Decision: estimate, low, high
    if iv.low is None:
        return fmt(iv.estimate)
    return f"{fmt(iv.estimate)} [{fmt(iv.low)}, {fmt(iv.high)}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
