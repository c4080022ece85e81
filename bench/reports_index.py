"""The committed-results index: the table in reports/README.md, re-derived from reports/*/results.json.

``python -m bench reports`` rewrites the table between the markers; a test fails when the committed
table differs from the regenerated one, so a stale table cannot land.
"""

from __future__ import annotations

from pathlib import Path

from bench.leaderboard import EMPTY, _cell, rows_of
from bench.report import fmt_ci, table
from bench.results import load_results

START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
COLUMNS = ["block_lesion", "multi_lesion", "reorder", "skip_lesion", "skip_removal", "identity_readout"]


def render_table(reports: Path) -> str:
    runs = sorted(p.parent for p in reports.glob("*/results.json"))
    if not runs:
        return "No committed studies yet."
    body, verdicts = [], []
    for run in runs:
        res = load_results(run)
        rows, _ = rows_of(res)
        device = res.provenance.get("device_name", "?")
        for r in rows:
            body.append([f"[{run.name}]({run.name}/report.md)", r["task"], r["architecture"], r["variant"],
                         r["metric"], _cell(r["value"]), _cell(r["chance"]),
                         *(_cell(r.get(c, EMPTY)) for c in COLUMNS)])
        v = res.verdict.headline if res.verdict else None
        verdict = (f"**{v.verdict}** ({v.architecture}, {v.ablation}: dense − global D = {fmt_ci(v.difference)})"
                   if v else "no verdict requested")
        verdicts.append([f"[{run.name}]({run.name}/report.md)", verdict, device,
                         f"{res.timings.get('study', 0):.0f} s"])
    return (table(["study", "verdict (95% CI)", "device", "wall time"], verdicts) + "\n\n"
            + table(["study", "task", "architecture", "variant", "metric", "value (mean ± sd, n seeds)", "chance",
                     *(f"D {c}" for c in COLUMNS)], body))


def update(readme: Path) -> bool:
    """Rewrite the table in ``readme``; True if it changed."""
    text = readme.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{START}\n{render_table(readme.parent)}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text


def committed_table(readme: Path) -> str:
    return readme.read_text().partition(START)[2].partition(END)[0].strip()
