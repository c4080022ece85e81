"""``bench compare RUN_A RUN_B``: configuration differences first, then cell-by-cell deltas (B − A).

Cells are matched by (task, architecture, variant); a cell present in one run only is named, never
dropped. Significance of a delta: Welch's t-test over seeds (scipy when installed, else a normal
approximation); with fewer than 2 seeds on either side it is reported as n/a.
"""

from __future__ import annotations

import math

from bench.leaderboard import rows_of
from bench.results import load_results


def config_diff(a, b, prefix: str = "") -> list[str]:
    out: list[str] = []
    if _named_list(a) and _named_list(b):  # e.g. ablations: match entries by name, not position
        a, b = {x["name"]: x for x in a}, {x["name"]: x for x in b}
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{prefix}{k}: only in B = {b[k]!r}")
            elif k not in b:
                out.append(f"{prefix}{k}: only in A = {a[k]!r}")
            else:
                out += config_diff(a[k], b[k], f"{prefix}{k}.")
    elif a != b:
        out.append(f"{prefix.rstrip('.')}: {a!r} -> {b!r}")
    return out


def _named_list(x) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(i, dict) and "name" in i for i in x)


def welch_p(ma: float, sa: float, na: int, mb: float, sb: float, nb: int) -> float | None:
    if na < 2 or nb < 2:
        return None
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    if se == 0:
        return 0.0 if ma != mb else 1.0
    t = (mb - ma) / se
    df = (sa**2 / na + sb**2 / nb) ** 2 / ((sa**2 / na) ** 2 / (na - 1) + (sb**2 / nb) ** 2 / (nb - 1) or 1e-12)
    try:
        from scipy import stats

        return float(2 * stats.t.sf(abs(t), df))
    except ImportError:
        return math.erfc(abs(t) / math.sqrt(2))


def compare(run_a: str, run_b: str) -> dict:
    ra, rb = load_results(run_a), load_results(run_b)
    rows_a, abl_a = rows_of(ra)
    rows_b, abl_b = rows_of(rb)
    key = lambda r: (r["task"], r["architecture"], r["variant"])  # noqa: E731
    ia, ib = {key(r): r for r in rows_a}, {key(r): r for r in rows_b}
    columns = ["value", *(a for a in abl_a if a in abl_b)]
    deltas = []
    for k in [k for k in ia if k in ib]:
        for col in columns:
            (ma, sa, na), (mb, sb, nb) = ia[k][col], ib[k][col]
            if ma is None or mb is None:
                continue
            deltas.append({"cell": k, "quantity": ia[k]["metric"] if col == "value" else f"D {col}", "a": ma,
                           "b": mb, "delta": mb - ma, "p": welch_p(ma, sa, na, mb, sb, nb), "n": (na, nb)})
    return {"config_diff": config_diff({k: v for k, v in ra.config.items() if k != "name"},
                                       {k: v for k, v in rb.config.items() if k != "name"}),
            "only_a": sorted(k for k in ia if k not in ib), "only_b": sorted(k for k in ib if k not in ia),
            "deltas": deltas, "a": ra.study, "b": rb.study}


def render(result: dict, fmt: str = "md") -> str:
    from bench.report import table

    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["task", "architecture", "variant", "quantity", "a", "b", "delta", "p", "n_a", "n_b"])
        for d in result["deltas"]:
            w.writerow([*d["cell"], d["quantity"], d["a"], d["b"], d["delta"], d["p"], *d["n"]])
        return buf.getvalue()
    lines = [f"# compare: A = {result['a']}, B = {result['b']}", "", "## Configuration differences (A -> B)", ""]
    lines += [f"- {d}" for d in result["config_diff"]] or ["- none"]
    lines += ["", "## Cells in one run only", ""]
    only = [f"- only in A: {'/'.join(k)}" for k in result["only_a"]] + \
           [f"- only in B: {'/'.join(k)}" for k in result["only_b"]]
    lines += only or ["- none: every cell is matched"]
    lines += ["", "## Deltas (B − A); p: Welch's t-test over seeds", ""]
    rows = [["/".join(d["cell"]), d["quantity"], f"{d['a']:.4f}", f"{d['b']:.4f}", f"{d['delta']:+.4f}",
             "n/a (1 seed)" if d["p"] is None else f"{d['p']:.3g}", f"{d['n'][0]} vs {d['n'][1]}"]
            for d in result["deltas"]]
    lines.append(table(["cell", "quantity", "A", "B", "B − A", "p", "seeds"], rows))
    return "\n".join(lines) + "\n"
