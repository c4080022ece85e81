"""report.md from results.json: the verdict first, then the evidence, then one section per ablation.

Every number printed here is read from results.json; nothing is recomputed from models.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.io import write_text
from bench.metrics import mean_of  # noqa: F401  (re-exported for ablation report sections)
from bench.registry import ABLATIONS
from bench.results import Interval, Results


def fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"



def fmt_ci(iv: Interval | dict | None) -> str:
    if iv is None:
        return "—"
    iv = iv if isinstance(iv, Interval) else Interval(**iv)
    if iv.low is None:
        return fmt(iv.estimate)
    return f"{fmt(iv.estimate)} [{fmt(iv.low)}, {fmt(iv.high)}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


WHAT_WOULD_CHANGE = {
    "supported": "it becomes *inconclusive* if the interval of the difference comes to include 0 and "
                 "*contradicted* if the whole interval falls below 0.",
    "contradicted": "it becomes *inconclusive* if the interval of the difference comes to include 0 and "
                    "*supported* if the whole interval rises above 0.",
    "inconclusive": "it is *supported* if the whole interval of the difference rises above 0, *contradicted* if "
                    "it falls below 0; more seeds or a larger test set narrow it.",
}
WEAK_MARGIN = 0.05  # above-chance score under which D (a ratio over that margin) is ill-conditioned


def weak_baselines(res: Results, arch: str) -> list[str]:
    """Warn where a headline task's trained model barely beats chance: D divides by that margin."""
    notes = []
    for task in (res.verdict.dense_task, res.verdict.global_task):
        cells = [c for c in res.cells if (c.task, c.architecture, c.variant, c.status) == (task, arch, "baseline", "ok")]
        if not cells:
            continue
        margin = float(np.mean([c.metrics[c.primary_metric] - c.chance[c.primary_metric] for c in cells]))
        if margin < WEAK_MARGIN:
            notes.append(f"Caution: `{arch}` on `{task}` scores only {margin:+.3f} above chance "
                         f"({cells[0].primary_metric}, mean over {len(cells)} seed(s)); D divides by that margin, so "
                         "its interval is wide. Train longer or on more data before reading this verdict.")
    return notes


def verdict_section(res: Results) -> str:
    v = res.verdict
    if v is None:
        return "## Verdict\n\nNo `verdict:` block in the config: no dense-vs-global comparison was requested.\n"
    out = ["## Verdict"]
    h = v.headline
    if h is None:
        out.append("**inconclusive** — the headline cell has no result (failed or not applicable).")
    else:
        out.append(
            f"**{h.verdict}** — claim: *dense prediction depends on the identity path more than global prediction*. "
            f"On `{h.architecture}` under `{h.ablation}`, identity dependence D of the dense task "
            f"`{v.dense_task}` is {fmt_ci(h.dense)} vs {fmt_ci(h.global_)} for the global task `{v.global_task}`; "
            f"difference {fmt_ci(h.difference)} (95% CI, {h.seeds} seed(s) x test-set bootstrap).")
        out.append("\nWhat would change it: " + WHAT_WOULD_CHANGE[h.verdict])
        out += [f"\n{note}" for note in weak_baselines(res, h.architecture)]
    out.append(f"\nMethod: {v.method} D = 1 − (m_ablated − m_chance)/(m_full − m_chance).")
    if v.rows:
        out.append("\n### Evidence\n")
        out.append(table(["architecture", "ablation", "measure", "seeds", "dense [95% CI]", "global [95% CI]",
                          "difference [95% CI]", "verdict"],
                         [[r.architecture, r.ablation, r.measure, r.seeds, fmt_ci(r.dense), fmt_ci(r.global_),
                           fmt_ci(r.difference), r.verdict] for r in v.rows]))
    return "\n".join(out) + "\n"


def models_section(res: Results) -> str:
    rows = []
    for c in res.cells:
        m = c.primary_metric
        rows.append([c.task, c.architecture, c.variant, c.seed, m,
                     fmt(c.metrics.get(m)) if c.status == "ok" else f"FAILED: {c.error}",
                     fmt(c.chance.get(m)), c.n_params, fmt(c.train.get("wall_s"), 1)])
    return "## Trained models\n\n" + table(
        ["task", "architecture", "variant", "seed", "metric", "value", "chance", "params", "train s"], rows) + "\n"


def removal_section(res: Results) -> str:
    own = {a for a in {c.ablation for c in res.comparisons}  # train-time ablations that draw their own section
           if a in ABLATIONS.names() and "section" in vars(ABLATIONS.get(a))}
    comparisons = [c for c in res.comparisons if c.ablation not in own]
    if not comparisons:
        return ""
    groups: dict[tuple, list] = defaultdict(list)
    for c in comparisons:
        groups[(c.task, c.architecture, c.variant, c.ablation)].append(c)
    rows = []
    for (task, arch, variant, _abl), cs in groups.items():
        full = np.mean([c.primary_full for c in cs])
        ablated = np.mean([c.primary_ablated for c in cs])
        deps = [c.dependence.estimate for c in cs if c.dependence.estimate is not None]
        ci = cs[0].dependence if len(cs) == 1 else None
        sd = float(np.std(deps, ddof=1)) if len(deps) > 1 else 0.0  # sample sd over seeds, as in leaderboard
        d = fmt_ci(ci) if ci else (f"{fmt(float(np.mean(deps)))} ± {fmt(sd)}" if deps else "—")
        rows.append([task, arch, variant, len(cs), fmt(full), fmt(ablated), d])
    return ("## How much each task lost when its identity paths were removed\n\n"
            "Trained without identity paths under the same recipe and seeds (`skip_removal`). D is the share of the "
            "above-chance score that was lost (0 = nothing lost, 1 = down to chance).\n\n" + table(
                ["task", "architecture", "variant", "seeds", "full (mean)", "without identity (mean)",
                 "D (CI, or mean ± std over seeds)"], rows) + "\n")


def ablation_sections(res: Results, run_dir: Path) -> str:
    out = []
    for spec in res.config.get("ablations", []):
        cls = ABLATIONS.get(spec["name"])
        section = getattr(cls, "section", None)
        if section is not None:
            text = section(res, run_dir)
            if text:
                out.append(text)
    return "\n".join(out)


def provenance_section(res: Results) -> str:
    p = res.provenance
    keys = ["bench_version", "git_commit", "git_dirty", "torch", "timm", "segmentation_models_pytorch",
            "device_name", *(["cpu"] if "cpu" in p else []), "python", "platform"]  # cpu: recorded since issue 16
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items())
    return "## Provenance\n\n" + "\n".join(f"- {k}: {p.get(k)}" for k in keys) + f"\n- wall time: {timing}\n"


def render(res: Results, run_dir: Path) -> str:
    parts = [f"# Identity-flow study: {res.study}\n", verdict_section(res), models_section(res),
             removal_section(res), ablation_sections(res, run_dir), provenance_section(res),
             "\n*Every number above is read from `results.json` in this folder.*\n"]
    return "\n".join(p for p in parts if p)


def write_report(run_dir: Path, res: Results) -> Path:
    path = Path(run_dir) / "report.md"
    write_text(path, render(res, Path(run_dir)))
    return path
