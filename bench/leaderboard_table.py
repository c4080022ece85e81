"""The leaderboard table: one row per run × task × architecture × training variant, from the runs'
results.json files, in the leaderboard's order; and its plain-text renderings (markdown, CSV).

Rows: run × task × architecture × training variant; columns: the primary metric (mean ± sd over
seeds, n), the chance level, and each ablation's identity dependence D (mean over seeds with a 95%
interval: the verdict's, over seeds and test examples, where it has one; else a t-interval over seeds;
one seed: its bootstrap over test examples; a train-time ablation's D is shown on the baseline row it was
compared against; an ablation that declares ``measure = "sufficiency"`` in results.json reports
sufficiency S instead). Rows of different run folders
are never merged, even for the same study name: their recipes may differ, and ``bench compare`` is the
tool that lines two runs up.

Rows are keyed by what was run, not by the config's alias: a task is its registered name and
parameters (two different tasks both called ``ell_seg`` are ranked apart), an architecture likewise
(a depth-2 and a depth-3 U-Net are told apart). Ranking rule: rows grouped by task; within a task,
baselines sorted by the primary metric, higher first, each followed by its train-time variants.
Schema: docs/results.md. HTML and LaTeX renderings: ``bench.leaderboard_render``, which reads this module
only; ``bench.leaderboard`` (the command) picks the rendering.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.markdown import csv_row, esc, table
from bench.results import Results, load_results

RANKING = ("rows grouped by task (its name and parameters, not its alias); within a task, baselines sorted by the "
           "primary metric's mean over seeds, higher first, each followed by its train-time variants")
MERGE = "rows of different run folders are never merged"
EMPTY = (None, None, 0)
HEADER = ["study", "task", "architecture", "variant", "metric", "value", "chance"]
NEAR_CHANCE = 0.1  # flagged when the score is above chance by less than this share of the headroom to 1


def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean, sample sd (ddof=1; 0.0 for one value) and count of the finite values."""
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return EMPTY
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, len(vals)


def seeds_interval(values: list[float | None]) -> tuple[tuple[float, float], str, float] | None:
    """95% t-interval of the mean over seeds (between-seed spread only; the verdict's interval, where a
    row has one, also resamples the test set and replaces this)."""
    vals = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(vals) < 2:
        return None
    from scipy import stats

    mean, half = float(vals.mean()), float(stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals)))
    return (mean - half, mean + half), "seeds", mean


def spec_text(spec: dict[str, Any] | None) -> str:
    """``unet(depth=2, width=4)``: a registered name and its parameters, as the config resolved them."""
    if not spec:
        return "?"
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in spec.items() if k != "name")
    return f"{spec.get('name', '?')}({params})"


def interval_of(obj: Any) -> tuple[float | None, float | None] | None:
    """(low, high) from a ``bench.results.Interval``-like object or dict; None when absent or empty."""
    if obj is None:
        return None
    low = obj.get("low") if isinstance(obj, dict) else getattr(obj, "low", None)
    high = obj.get("high") if isinstance(obj, dict) else getattr(obj, "high", None)
    return (low, high) if low is not None and high is not None else None


def measures_of(res: Results) -> dict[str, str]:
    """Each ablation's declared measure (``dependence``, ``sufficiency``, ``profile``), as results.json
    records it; never inferred from the ablation's name."""
    return {name: decl.get("measure", "dependence") for name, decl in res.ablations.items()}


def verdict_rows(res: Results) -> list:
    verdict = getattr(res, "verdict", None)
    return list(getattr(verdict, "rows", None) or []) if verdict is not None else []


def rows_of(res: Results) -> tuple[list[dict], list[str]]:
    """One row per (task, architecture, variant) of one run, and the ablation names in config order.

    Each row also carries ``task_spec``/``arch_spec`` (what was run), ``n_params``, ``ablations`` (per
    ablation: mean, sd and n of its D, ``d_of``), ``intervals`` (per ablation: a 95% interval or None, with
    its source), ``verdicts`` (the verdict rows it belongs to) and ``measures`` (each ablation's declared
    measure, ``measures_of``). Whatever a plugin names lives under one of these keys, never beside them, so
    no ablation name can replace a field of the row (an ablation called ``value`` or ``intervals``).
    """
    groups: dict[tuple, list] = defaultdict(list)
    for c in res.cells:
        groups[(c.task, c.architecture, c.variant)].append(c)
    ablations = [a["name"] for a in res.config.get("ablations", [])]
    comp: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    headline: dict[tuple, str] = {}
    for cm in res.comparisons:  # a train-time D belongs to the baseline it was measured against
        key = (cm.task, cm.architecture, cm.ablation)
        headline.setdefault(key, cm.variant)  # the ablation's first (headline) variant, as in the verdict
        if headline[key] == cm.variant:
            comp[(cm.task, cm.architecture, "baseline")][cm.ablation].append(cm.dependence)
    verdict = getattr(res, "verdict", None)
    dense, global_ = getattr(verdict, "dense_task", None), getattr(verdict, "global_task", None)
    head = getattr(verdict, "headline", None)
    tasks, archs = res.config.get("tasks", {}), res.config.get("architectures", {})
    measures = measures_of(res)
    rows = []
    for (task, arch, variant), cells in groups.items():
        ok = [c for c in cells if c.status == "ok"]
        metric = cells[0].primary_metric
        row = {"study": res.study, "task": task, "architecture": arch, "variant": variant, "metric": metric,
               "value": mean_std([c.metrics.get(metric) for c in ok]),
               "chance": mean_std([c.chance.get(metric) for c in ok]), "failed": len(cells) - len(ok),
               "task_spec": spec_text(tasks.get(task)), "arch_spec": spec_text(archs.get(arch)),
               "task_kind": cells[0].task_kind, "n_params": next((c.n_params for c in cells if c.n_params), None),
               "ablations": {}, "intervals": {}, "verdicts": [], "measures": measures}
        side = "dense" if task == dense else "global_" if task == global_ else None
        for name in ablations:
            outs = [c.ablations[name] for c in ok if name in c.ablations]
            vals = [o.summary.get("dependence", o.summary.get("sufficiency")) for o in outs]
            cis = [interval_of(o.summary_ci) for o in outs]
            deps = comp[(task, arch, variant)].get(name, [])
            vals += [d.estimate for d in deps]
            cis += [interval_of(d) for d in deps]
            row["ablations"][name] = mean_std(vals)
            row["intervals"][name] = (cis[0], "seed", vals[0]) if len(cis) == 1 and cis[0] else seeds_interval(vals)
        if side and variant == "baseline":
            for vr in verdict_rows(res):
                if vr.architecture != arch:
                    continue
                ci = interval_of(getattr(vr, side, None))
                if ci and vr.ablation in row["intervals"]:  # seeds and test examples resampled; its own estimate
                    row["intervals"][vr.ablation] = (ci, "verdict", getattr(getattr(vr, side), "estimate", None))
                row["verdicts"].append({"ablation": vr.ablation, "verdict": vr.verdict,
                                        "difference": interval_of(vr.difference),
                                        "estimate": getattr(vr.difference, "estimate", None),
                                        "headline": vr is head or (head is not None and
                                                                   (head.architecture, head.ablation) ==
                                                                   (vr.architecture, vr.ablation))})
        rows.append(row)
    return rows, ablations


def decision(d: Any) -> tuple[float | None, float | None, float | None]:
    """(estimate, low, high) of a ``bench.results.Decision``; Nones where absent."""
    return (getattr(d, "estimate", None), getattr(d, "low", None), getattr(d, "high", None))


def headlines_of(res: Results) -> list[dict]:
    """Each verdict pair's headline row of one run, as the paper's verdict table shows it: the pair (dense and
    global task), the architecture and ablation, D_dense, D_global and their difference (estimate, low, high),
    the seeds it rests on and the call; ``missing`` (why) where the pair has no headline row."""
    out = []
    for v in res.all_verdicts():
        entry: dict[str, Any] = {"label": v.label, "dense_task": v.dense_task, "global_task": v.global_task,
                                 "scale": v.scale, "alpha": v.alpha}
        h = v.headline
        if h is None:
            entry["missing"] = v.headline_missing or "no headline row"
        else:
            entry.update(architecture=h.architecture, ablation=h.ablation, measure=h.measure, seeds=h.seeds,
                         dense=decision(h.dense), global_=decision(h.global_), difference=decision(h.difference),
                         call=h.verdict)
        out.append(entry)
    return out


def d_of(row: dict, ablation: str) -> tuple:
    """(mean, sd, n) of the ablation's D (or S) on this row; ``EMPTY`` where it was not measured."""
    return row["ablations"].get(ablation, EMPTY)


def near_chance(row: dict) -> bool:
    """The score barely clears chance: its D (a share of the above-chance score) is not meaningful."""
    m, c = row["value"][0], row["chance"][0]
    if m is None or c is None:
        return False
    return (m - c) < NEAR_CHANCE * max(1.0 - c, 1e-9)


def run_label(study: str, path: str | Path) -> str:
    """The study name, plus the run folder when it says something more (two runs of one study)."""
    path = Path(path).resolve()
    folder = path.parent.name if path.is_file() else path.name
    return study if folder == study else f"{study} ({folder})"


def run_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(configs: list[dict]) -> list[dict[str, Any]]:
    """For each run, the config keys whose values differ between the runs (tasks/architectures excepted:
    their parameters are columns of their own; ablations compared as a list)."""
    flat = []
    for cfg in configs:
        rest = {k: v for k, v in cfg.items() if k not in ("tasks", "architectures", "name", "ablations")}
        f = flatten(rest)
        f["ablations"] = ", ".join(a.get("name", "?") for a in cfg.get("ablations", []))
        flat.append(f)
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]
    return [{k: f.get(k) for k in differ} for f in flat]


def build(run_dirs: list[str]) -> tuple[list[dict], list[str]]:
    """All runs' rows, ordered: by task (what was run), baselines by metric, variants under their baseline."""
    rows, columns, configs = [], [], []
    for i, d in enumerate(run_dirs):
        res = load_results(d)
        r, abl = rows_of(res)
        configs.append(res.config)
        heads = headlines_of(res)
        for row in r:
            row["headlines"] = heads  # the run's verdict (every row of a run shares it)
            row["study"] = run_label(res.study, d)
            row["run"] = i
            row["run_dir"] = str(run_dir(d))
            row["scale"] = getattr(res, "scale", None)  # what D is computed on (results.json's ``scale``)
        rows += r
        columns += [a for a in abl if a not in columns]
    diffs = config_differences(configs) if len(configs) > 1 else [{} for _ in configs]
    for row in rows:
        row["differs"] = diffs[row["run"]]
        row["near_chance"] = near_chance(row)
    columns = [a for a in columns if any(d_of(row, a)[0] is not None for row in rows)]  # ablations with a D
    return order(rows), columns


def order(rows: list[dict]) -> list[dict]:
    """Tasks by alias, then spec; baselines by mean (higher first); each baseline's variants right after it."""
    def score(r):
        return -(r["value"][0] if r["value"][0] is not None else -1)

    baselines = {(r["run"], r["task"], r["architecture"]): r for r in rows if r["variant"] == "baseline"}
    task_order = sorted({(r["task_spec"], r["task"]) for r in rows}, key=lambda t: (t[1], t[0]))
    rank_of_task = {spec: i for i, (spec, _) in enumerate(task_order)}

    def key(r):
        base = baselines.get((r["run"], r["task"], r["architecture"]), r)
        return (rank_of_task[r["task_spec"]], score(base), base["run"], base["architecture"],
                r["variant"] != "baseline", r["variant"])

    ordered = sorted(rows, key=key)
    rank: dict[str, int] = defaultdict(int)
    for r in ordered:
        if r["variant"] == "baseline":
            rank[r["task_spec"]] += 1
            r["rank"] = rank[r["task_spec"]]
        else:
            r["rank"] = None
    return ordered


def _cell(ms: tuple) -> str:
    mean, std, n = ms
    if mean is None:
        return "—"
    return f"{mean:.3f} ± {std:.3f} (n={n})" if n > 1 else f"{mean:.3f} (n=1)"


def measure_label(ablation: str, measure: str | None = "dependence") -> str:
    """The column heading: ``S name`` for a declared sufficiency, ``D name`` otherwise."""
    return f"S {ablation}" if measure == "sufficiency" else f"D {ablation}"


def measure_of(rows: list[dict], ablation: str) -> str:
    """The measure the ablation declares, from the first row of a run that ran it (``measures_of``)."""
    return next((r["measures"][ablation] for r in rows if ablation in r.get("measures", {})), "dependence")


def labels(rows: list[dict], ablations: list[str]) -> list[str]:
    """The ablations' column headings (``measure_label``), each with its declared measure."""
    return [measure_label(a, measure_of(rows, a)) for a in ablations]


def differs_text(differs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in differs.items())


def render_csv(rows: list[dict], ablations: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(csv_row(["study", "task", "architecture", "variant", "metric", "mean", "std", "n", "chance",
                *(f"{a}_{s}" for a in ablations for s in ("mean", "std", "n")), "failed",
                "task_spec", "arch_spec", "n_params", "near_chance", "differs",
                *(f"{a}_{s}" for a in ablations for s in ("low", "high"))]))
    for r in rows:  # csv_row: a name starting with = + - @ is text to a spreadsheet, not a formula
        cis = [(r["intervals"].get(a) or ((None, None), "", None))[0] for a in ablations]
        w.writerow(csv_row([r["study"], r["task"], r["architecture"], r["variant"], r["metric"], *r["value"],
                            r["chance"][0], *(x for a in ablations for x in d_of(r, a)), r["failed"],
                            r["task_spec"], r["arch_spec"], r["n_params"], int(r["near_chance"]),
                            differs_text(r["differs"]), *(x for ci in cis for x in ci)]))
    return buf.getvalue()


def render_markdown(rows: list[dict], ablations: list[str]) -> str:
    header = HEADER + [esc(label) for label in labels(rows, ablations)] + ["failed"]
    body = [[*(esc(r[k]) for k in ("study", "task", "architecture", "variant", "metric")), _cell(r["value"]),
             _cell(r["chance"]), *(_cell(d_of(r, a)) for a in ablations), str(r["failed"])] for r in rows]
    note = (f"Ranking: {RANKING}; {MERGE}. D = identity dependence (share of the above-chance score lost when "
            "identity paths are ablated), S = identity sufficiency; mean ± sd over seeds (n seeds); "
            "failed = cells that did not finish.")
    return f"{note}\n\n{table(header, body)}\n"
