"""``bench compare RUN_A RUN_B``: configuration differences first, then cell-by-cell deltas (B − A).

Cells are matched by (task, architecture, variant) as named in the configs; a cell present in one run
only, a quantity (ablation) measured in one run only, and a cell with no result on one side are all
named, never dropped. Significance of a delta: Welch's two-sided t-test over seeds (scipy's t
distribution when installed, else a normal approximation); with fewer than 2 seeds on either side it
is reported as n/a. Schema of the inputs: docs/results.md.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable

from bench.diff import config_diff
from bench.leaderboard_table import d_of, measure_label, measures_of, rows_of
from bench.markdown import csv_row, esc, table
from bench.results import load_results

ENVIRONMENT = ["bench_version", "git_commit", "git_dirty", "torch", "timm", "segmentation_models_pytorch",
               "device_name", "cpu", "deterministic"]  # cpu: results differ across CPUs within the seed spread


def welch_p(ma: float, sa: float, na: int, mb: float, sb: float, nb: int) -> float | None:
    """Two-sided p of Welch's t-test from means, sample sds and counts; None below 2 seeds a side."""
    if na < 2 or nb < 2:
        return None
    va, vb = sa**2 / na, sb**2 / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0 if ma != mb else 1.0
    t = (mb - ma) / se
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    try:
        from scipy import stats
    except ImportError:
        return math.erfc(abs(t) / math.sqrt(2))
    return float(2 * stats.t.sf(abs(t), df))


def p_method() -> str:
    try:
        import scipy  # noqa: F401
    except ImportError:
        return "Welch's t over seeds, normal approximation (scipy not installed)"
    return "Welch's t-test over seeds (two-sided)"


def quantity_of(row: dict, ablation: str | None) -> tuple:
    """(mean, sd, n) of the row's primary metric (``ablation`` None) or of an ablation's D: an ablation's
    name is looked up among the ablations only, so no name can stand for the metric."""
    return row["value"] if ablation is None else d_of(row, ablation)


def compare(run_a: str, run_b: str) -> dict:
    ra, rb = load_results(run_a), load_results(run_b)
    rows_a, abl_a = rows_of(ra)
    rows_b, abl_b = rows_of(rb)
    key = lambda r: (r["task"], r["architecture"], r["variant"])  # noqa: E731
    ia, ib = {key(r): r for r in rows_a}, {key(r): r for r in rows_b}
    columns = [None, *(a for a in abl_a if a in abl_b)]  # None: the primary metric; then the shared ablations
    labels = {a: measure_label(a, m) for a, m in {**measures_of(rb), **measures_of(ra)}.items()}  # as declared
    deltas, missing = [], []
    for k in [k for k in ia if k in ib]:
        for col in columns:
            (ma, sa, na), (mb, sb, nb) = quantity_of(ia[k], col), quantity_of(ib[k], col)
            quantity = ia[k]["metric"] if col is None else labels.get(col, measure_label(col))
            if ma is None and mb is None:
                continue  # not measured for this cell in either run (e.g. a test-time ablation on a variant)
            if ma is None or mb is None:
                missing.append((k, quantity, "A" if ma is None else "B"))
                continue
            deltas.append({"cell": k, "quantity": quantity, "a": ma, "b": mb, "delta": mb - ma,
                           "p": welch_p(ma, sa, na, mb, sb, nb), "n": (na, nb)})
    env = [f"{k}: {ra.provenance.get(k)!r} -> {rb.provenance.get(k)!r}" for k in ENVIRONMENT
           if ra.provenance.get(k) != rb.provenance.get(k)]
    return {"config_diff": config_diff({k: v for k, v in ra.config.items() if k != "name"},
                                       {k: v for k, v in rb.config.items() if k != "name"}),
            "environment": env,
            "only_a": sorted(k for k in ia if k not in ib), "only_b": sorted(k for k in ib if k not in ia),
            "ablations_only_a": [a for a in abl_a if a not in abl_b],
            "ablations_only_b": [a for a in abl_b if a not in abl_a],
            "missing": missing, "deltas": deltas, "a": ra.study, "b": rb.study, "labels": labels}


def render(result: dict, fmt: str = "md") -> str:
    def label(ablation: str) -> str:  # S for an ablation results.json declares a sufficiency, else D
        return result.get("labels", {}).get(ablation, measure_label(ablation))

    return render_csv(result, label) if fmt == "csv" else render_markdown(result, label)


def render_csv(result: dict, label: Callable[[str], str]) -> str:
    """One row type per line, in the markdown's order: config first, then gaps, then deltas; a cell a
    spreadsheet would evaluate (a name starting with ``=``) is written as text (``csv_row``)."""
    rows = [["kind", "task", "architecture", "variant", "quantity", "a", "b", "delta", "p", "n_a", "n_b"]]
    for line in result["config_diff"]:
        path, _, change = line.partition(": ")
        rows.append(["config", "", "", "", path, change, "", "", "", "", ""])
    for side in ("a", "b"):
        rows += [[f"only_{side}", *k, "", "", "", "", "", "", ""] for k in result[f"only_{side}"]]
        rows += [[f"only_{side}", "", "", "", label(abl), "", "", "", "", "", ""]
                 for abl in result[f"ablations_only_{side}"]]
    rows += [[f"no_result_{side.lower()}", *k, quantity, "", "", "", "", "", ""]
             for k, quantity, side in result["missing"]]
    rows += [["delta", *d["cell"], d["quantity"], d["a"], d["b"], d["delta"], d["p"], *d["n"]]
             for d in result["deltas"]]
    buf = io.StringIO()
    csv.writer(buf).writerows(csv_row(r) for r in rows)
    return buf.getvalue()


def render_markdown(result: dict, label: Callable[[str], str]) -> str:
    """The report: every name, config line and provenance value escaped (``esc``), so none is read as markup."""
    def cell(k: tuple) -> str:
        return "/".join(esc(x) for x in k)

    def change(line: str) -> str:  # "path: a -> b", each side escaped, the arrow kept
        return " -> ".join(esc(part) for part in line.split(" -> "))

    lines = [f"# compare: A = {esc(result['a'])}, B = {esc(result['b'])}", "",
             "## Configuration differences (A -> B)", ""]
    lines += [f"- {change(d)}" for d in result["config_diff"]] or ["- none"]
    if result["environment"]:
        lines += ["", "Environment (provenance) differences:", ""] + [f"- {change(e)}" for e in result["environment"]]
    lines += ["", "## Not compared (named, not dropped)", ""]
    gaps = [f"- only in {s.upper()}: {cell(k)}" for s in ("a", "b") for k in result[f"only_{s}"]]
    gaps += [f"- measured only in {s.upper()}: {esc(label(a))}" for s in ("a", "b")
             for a in result[f"ablations_only_{s}"]]
    gaps += [f"- no result in {side}: {cell(k)} {esc(q)} (failed cells, or D undefined: model at chance)"
             for k, q, side in result["missing"]]
    lines += gaps or ["- none: every cell and quantity is matched"]
    lines += ["", f"## Deltas (B − A); p: {p_method()}", ""]
    rows = [[cell(d["cell"]), esc(d["quantity"]), f"{d['a']:.4f}", f"{d['b']:.4f}", f"{d['delta']:+.4f}",
             "n/a (1 seed)" if d["p"] is None else f"{d['p']:.3g}", f"{d['n'][0]} vs {d['n'][1]}"]
            for d in result["deltas"]]
    lines.append(table(["cell", "quantity", "A", "B", "B − A", "p", "seeds"], rows))
    return "\n".join(lines) + "\n"
