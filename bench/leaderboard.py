"""``bench leaderboard``: one table across runs, derived from their results.json files.

Rows: study (run folder) × task × architecture × training variant; columns: the primary metric (mean ± std over
seeds, n), the chance level, and each ablation's identity dependence D (mean ± std over seeds; a
train-time ablation's D is shown on the baseline row it was compared against). Rows of different
studies are never merged (their recipes may differ). Ranking rule: by task, then primary metric,
higher first.
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


def mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def rows_of(res: Results) -> tuple[list[dict], list[str]]:
    groups: dict[tuple, list] = defaultdict(list)
    for c in res.cells:
        groups[(c.task, c.architecture, c.variant)].append(c)
    ablations = [a["name"] for a in res.config.get("ablations", [])]
    comp: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    headline: dict[tuple, str] = {}
    for cm in res.comparisons:
        key = (cm.task, cm.architecture, cm.ablation)
        headline.setdefault(key, cm.variant)
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


def build(run_dirs: list[str]) -> tuple[list[dict], list[str]]:
    rows, columns = [], []
    for d in run_dirs:
        r, abl = rows_of(load_results(d))
        for row in r:
            row["study"] = f"{row['study']} ({Path(d).resolve().name})"  # two runs of one study stay apart
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


EMPTY = (None, None, 0)
HEADER = ["study", "task", "architecture", "variant", "metric", "value", "chance"]


def render(rows: list[dict], ablations: list[str], fmt: str) -> str:
    header = HEADER + [f"D {a}" for a in ablations] + ["failed"]
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
    note = f"Ranking: {RANKING}. D = identity dependence (share of above-chance score lost), mean ± std over seeds."
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
