"""From cells to results: comparisons, dependence intervals and the verdict, as pure functions.

Everything here is a function of the plan, the loaded cell records and their arrays (per-example
statistics, bootstrap replicates) — no run folder, no files: the driver loads the cells, a test can
build them in memory. Bootstrap replicates are recomputed from the stored statistics each time
(milliseconds per cell), never written and read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.ablations.base import dependence
from bench.data import TaskInfo
from bench.metrics import SCALES, Outcome, shared_weights
from bench.plan import Plan
from bench.results import SCHEMA_VERSION, Cell, Comparison, Interval, Results, cell_id
from bench.stats import percentile_interval
from bench.verdict import Evidence, compute_verdicts

Arrays = Mapping[str, Mapping[str, np.ndarray]]  # cell id -> its npz arrays


def comparisons(plan: Plan, cells: list[Cell], arrays: Arrays,
                infos: Mapping[str, TaskInfo]) -> tuple[list[Comparison], dict[str, np.ndarray]]:
    """Each train-time variant against its baseline (same task, architecture, seed): D with its interval
    over test examples on the study's scale, and D's bootstrap replicates per variant cell (what the verdict
    resamples)."""
    by_id = {c.id: c for c in cells}
    d_scale = SCALES[plan.cfg.scale]
    out, boots = [], {}
    for u in plan.units:
        if u.variant == "baseline":
            continue
        base_id = cell_id(u.task, u.arch, "baseline", u.seed)
        cell, base = by_id[u.id], by_id[base_id]
        if cell.status != "ok" or base.status != "ok":
            continue
        info = infos[u.task]
        full, abl = Outcome(arrays[base_id]["stats"], info), Outcome(arrays[u.id]["stats"], info)
        chance = Outcome(arrays[base_id]["chance_stats"], info)
        w = shared_weights(full.n, plan.cfg.bootstrap)
        m = d_scale.metric
        d = float(dependence(abl.value(m), full.value(m), full.value(d_scale.chance)))
        boot = dependence(abl.bootstrap(w, m), full.bootstrap(w, m), full.bootstrap(w, d_scale.chance))
        headline = u.variant == plan.headline_variant(u.arch, u.ablation)
        out.append(Comparison(ablation=u.ablation or "?", task=u.task, architecture=u.arch, headline=headline,
                              variant=u.variant, seed=u.seed, primary_full=round(full.primary, 6),
                              primary_ablated=round(abl.primary, 6), primary_chance=round(chance.primary, 6),
                              score_full=round(full.value(m), 6), score_ablated=round(abl.value(m), 6),
                              score_chance=round(full.value(d_scale.chance), 6),
                              dependence=Interval(**percentile_interval(d, boot))))
        boots[u.id] = boot
    return out, boots


def assemble(plan: Plan, cells: list[Cell], arrays: Arrays, infos: Mapping[str, TaskInfo],
             provenance: dict[str, Any], timings: dict[str, float]) -> Results:
    """results.json's content (but its invocations, which the driver knows) from the study's cells."""
    comps, boots = comparisons(plan, cells, arrays, infos)
    evidence = Evidence(cells=cells, comparisons=comps, arrays=arrays, dependence_boots=boots, infos=infos)
    declarations = {n: type(a).declaration() for n, a in plan.ablations.items()}
    verdict, verdicts, interaction, interactions = compute_verdicts(plan.cfg, evidence, declarations)
    # the compute behind the results: the cells' own time (training, evaluation, ablations), whichever
    # invocation computed them
    timings = {**timings, "cells": round(sum(sum(c.timings.values()) + sum(a.wall_s for a in c.ablations.values())
                                             for c in cells), 3)}
    return Results(schema_version=SCHEMA_VERSION, study=plan.name, config=plan.resolved, provenance=provenance,
                   timings=timings, scale=SCALES[plan.cfg.scale].metric,
                   ablations=declarations, cells=cells, comparisons=comps,
                   verdict=verdict, verdicts=verdicts, interaction=interaction, interactions=interactions, code=recorded_code(cells))


def recorded_code(cells: list[Cell]) -> dict[str, str]:
    """The code hashes the cells were computed with, one entry per component (a resumed study's cells agree:
    ``bench.driver.stale`` retrains the others)."""
    return {name: h for c in cells for name, h in sorted(c.code.items())}
