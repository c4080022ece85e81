"""``bench leaderboard``: one table across runs, derived from their results.json files.

Rows: run × task × architecture × training variant; columns: the primary metric (mean ± sd over
seeds, n), the chance level, and each ablation's identity dependence D (mean ± sd over seeds; a
train-time ablation's D is shown on the baseline row it was compared against; ``identity_readout``
reports sufficiency S instead). Rows of different run folders are never merged, even for the same
study name: their recipes may differ, and ``bench compare`` is the tool that lines two runs up.
Ranking rule: by task, then primary metric, higher first. Schema: docs/results.md.
"""

from __future__ import annotations

import csv
import html
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.results import Results, load_results

RANKING = "rows grouped by task; within a task, sorted by the primary metric's mean over seeds, higher first"
MERGE = "rows of different run folders are never merged"
SUFFICIENCY = {"identity_readout"}  # ablations whose per-model number is a sufficiency, not a dependence
EMPTY = (None, None, 0)
HEADER = ["study", "task", "architecture", "variant", "metric", "value", "chance"]


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample sd (ddof=1; 0.0 for one value) and count of the finite values."""
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return EMPTY
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def rows_of(res: Results) -> tuple[list[dict], list[str]]:
    """One row per (task, architecture, variant) of one run, and the ablation names in config order."""
    groups: dict[tuple, list] = defaultdict(list)
    for c in res.cells:
        groups[(c.task, c.architecture, c.variant)].append(c)
    ablations = [a["name"] for a in res.config.get("ablations", [])]
    comp: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    headline: dict[tuple, str] = {}
    for cm in res.comparisons:  # a train-time D belongs to the baseline it was measured against
        key = (cm.task, cm.architecture, cm.ablation)
        headline.setdefault(key, cm.variant)  # the ablation's first (headline) variant, as in the verdict
        if headline[key] == cm.variant:
            comp[(cm.task, cm.architecture, "baseline")][cm.ablation].append(cm.dependence.estimate)
    rows = []
    for (task, arch, variant), cells in groups.items():
        ok = [c for c in cells if c.status == "ok"]
        metric = cells[0].primary_metric
        row = {"study": res.study, "task": task, "architecture": arch, "variant": variant, "metric": metric,
               "value": mean_std([c.metrics.get(metric) for c in ok]),
               "chance": mean_std([c.chance.get(metric) for c in ok]), "failed": len(cells) - len(ok)}
        for name in ablations:
            vals = [c.ablations[name].summary.get("dependence", c.ablations[name].summary.get("sufficiency"))
                    for c in ok if name in c.ablations]
            vals += comp[(task, arch, variant)].get(name, [])
            row[name] = mean_std(vals)
        rows.append(row)
    return rows, ablations


def run_label(study: str, path: str | Path) -> str:
    """The study name, plus the run folder when it says something more (two runs of one study)."""
    path = Path(path).resolve()
    folder = path.parent.name if path.is_file() else path.name
    return study if folder == study else f"{study} ({folder})"


def build(run_dirs: list[str]) -> tuple[list[dict], list[str]]:
    rows, columns = [], []
    for d in run_dirs:
        res = load_results(d)
        r, abl = rows_of(res)
        for row in r:
            row["study"] = run_label(res.study, d)
        rows += r
        columns += [a for a in abl if a not in columns]
    columns = [a for a in columns if any(row.get(a, EMPTY)[0] is not None for row in rows)]  # ablations with a D
    rows.sort(key=lambda r: (r["task"], -(r["value"][0] if r["value"][0] is not None else -1)))
    return rows, columns


def _cell(ms: tuple) -> str:
    mean, std, n = ms
    if mean is None:
        return "—"
    return f"{mean:.3f} ± {std:.3f} (n={n})" if n > 1 else f"{mean:.3f} (n=1)"


def measure_label(ablation: str) -> str:
    return f"S {ablation}" if ablation in SUFFICIENCY else f"D {ablation}"


def render(rows: list[dict], ablations: list[str], fmt: str) -> str:
    header = HEADER + [measure_label(a) for a in ablations] + ["failed"]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["study", "task", "architecture", "variant", "metric", "mean", "std", "n", "chance",
                    *(f"{a}_{s}" for a in ablations for s in ("mean", "std", "n")), "failed"])
        for r in rows:
            w.writerow([r["study"], r["task"], r["architecture"], r["variant"], r["metric"], *r["value"],
                        r["chance"][0], *(x for a in ablations for x in r.get(a, EMPTY)), r["failed"]])
        return buf.getvalue()
    body = [[r["study"], r["task"], r["architecture"], r["variant"], r["metric"], _cell(r["value"]),
             _cell(r["chance"]), *(_cell(r.get(a, EMPTY)) for a in ablations), str(r["failed"])] for r in rows]
    note = (f"Ranking: {RANKING}; {MERGE}. D = identity dependence (share of the above-chance score lost when "
            "identity paths are ablated), S = identity sufficiency; mean ± sd over seeds (n seeds); "
            "failed = cells that did not finish.")
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return (f"<!doctype html><meta charset='utf-8'><title>bench leaderboard</title><p>{html.escape(note)}</p>"
                f"<table border='1' cellpadding='4'><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>\n")
    from bench.report import table

    return f"{note}\n\n{table(header, body)}\n"


def write_or_print(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="")
    else:
        from bench.io import write_text

        write_text(out, text)
        print(f"wrote {out}")
