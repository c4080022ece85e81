"""The verdict on the claim: does dense prediction depend on the identity path more than global?

For each architecture and ablation with a per-model identity dependence D (a test-time ablation's
summary, or a train-time ablation's headline variant vs its baseline), per seed s the difference
Δ_s = D_dense,s − D_global,s is bootstrapped over test examples (paired when both tasks share the
same test images). A two-level bootstrap (seeds with replacement, then one test-set replicate per
drawn seed) gives the 95% interval of the mean Δ. Decision, never from the point estimate:
supported if the whole interval is > 0, contradicted if < 0, inconclusive otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.registry import ABLATIONS, ARCHITECTURES
from bench.results import Cell, Comparison, Interval, Verdict, VerdictRow
from bench.rundir import RunDir, cell_id

METHOD = ("95% CI of mean over seeds of D_dense − D_global; two-level bootstrap: seeds resampled with "
          "replacement, then one test-set bootstrap replicate per drawn seed (paired test examples). "
          "supported: CI > 0; contradicted: CI < 0; else inconclusive.")


def _per_seed(task: str, arch: str, ablation: str, cells: list[Cell], comparisons: list[Comparison],
              run_dir: Path) -> dict[int, tuple[float, np.ndarray]]:
    out: dict[int, tuple[float, np.ndarray]] = {}
    for c in cells:
        if (c.task, c.architecture, c.variant, c.status) == (task, arch, "baseline", "ok") and ablation in c.ablations:
            summary = c.ablations[ablation].summary
            d = summary.get("dependence", summary.get("sufficiency"))
            z = RunDir(run_dir).load_arrays(c.id)
            key = f"boot__{ablation}"
            if d is not None and key in z:
                out[c.seed] = (d, z[key])
    headline = next((c.variant for c in comparisons if (c.task, c.architecture, c.ablation) == (task, arch, ablation)), None)
    for c in comparisons:
        if (c.task, c.architecture, c.ablation, c.variant) == (task, arch, ablation, headline):
            cid = cell_id(task, arch, c.variant, c.seed)
            if c.dependence.estimate is not None:
                out[c.seed] = (c.dependence.estimate, RunDir(run_dir).load_dependence_boot(cid))
    return out


def _two_level(points: list[float], boots: list[np.ndarray], replicates: int, seed: int = 0) -> Interval:
    est = float(np.mean(points))
    b = np.stack(boots)  # (S, B)
    rng = np.random.default_rng(seed)
    s, n = b.shape
    draws = b[rng.integers(0, s, (replicates, s)), rng.integers(0, n, (replicates, s))].mean(1)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return Interval(estimate=round(est, 6), low=None, high=None)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return Interval(estimate=round(est, 6), low=round(float(lo), 6), high=round(float(hi), 6))


def compute_verdict(resolved: dict, cells: list[Cell], comparisons: list[Comparison], run_dir: Path,
                    replicates: int) -> Verdict | None:
    spec = resolved.get("verdict")
    if not spec:
        return None
    dense, glob = spec["dense"], spec["global"]
    rows: list[VerdictRow] = []
    shown: set[str] = set()  # ablations independent of the architecture, already shown once
    for arch in resolved["architectures"]:
        for abl in (a["name"] for a in resolved["ablations"]):
            if abl in shown:
                continue
            d = _per_seed(dense, arch, abl, cells, comparisons, run_dir)
            g = _per_seed(glob, arch, abl, cells, comparisons, run_dir)
            seeds = sorted(set(d) & set(g))
            if not seeds:
                continue
            label = arch
            if not ABLATIONS.get(abl).per_architecture:
                shown.add(abl)
                label = "(input)"
            diff = _two_level([d[s][0] - g[s][0] for s in seeds], [d[s][1] - g[s][1] for s in seeds], replicates)
            verdict = "inconclusive"
            if diff.low is not None and diff.low > 0:
                verdict = "supported"
            elif diff.high is not None and diff.high < 0:
                verdict = "contradicted"
            measure = "sufficiency" if abl == "identity_readout" else "dependence"
            rows.append(VerdictRow(
                architecture=label, ablation=abl, measure=measure, seeds=len(seeds), verdict=verdict, difference=diff,
                dense=_two_level([d[s][0] for s in seeds], [d[s][1] for s in seeds], replicates),
                global_=_two_level([g[s][0] for s in seeds], [g[s][1] for s in seeds], replicates)))
    head_arch = spec.get("architecture") or _natural_dense(resolved)
    headline = next((r for r in rows if r.architecture == head_arch and r.ablation == spec["ablation"]), None)
    return Verdict(dense_task=dense, global_task=glob, headline=headline, rows=rows, method=METHOD)


def _natural_dense(resolved: dict) -> str:
    archs = resolved["architectures"]
    for alias, spec in archs.items():
        if "segmentation" in getattr(ARCHITECTURES.get(spec["name"]), "natural", ()):
            return alias
    return next(iter(archs))
