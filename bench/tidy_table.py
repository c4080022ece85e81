"""results.json as one tidy table (a pandas DataFrame), for one's own figures and statistics.

    import bench

    df = bench.tidy("reports/quickstart")      # a run folder, its results.json, or loaded Results

One row per seed x cell x ablation setting: every record of every test-time ablation of every cell (its
``key`` fields flattened as ``key_<field>``), and one row per train-time comparison (``skip_removal``: the
variant against its baseline, ``key_variant``). Columns, in this order:

- ``task``, ``architecture``, ``variant``, ``seed``, ``cell``: which trained model (``cell``: its id);
- ``ablation``, ``phase`` (test | train), ``key_*``: which setting of which ablation;
- ``dependence``: D of that setting (None where undefined), on the study's scale (``scale``);
- ``primary_metric``, ``primary``: the task's own metric of the ablated model; ``primary_full``, its intact
  value; ``primary_chance``, the majority-class predictor's;
- ``score``, ``score_full``, ``score_chance``: the same on the study's scale (the scale D is read on);
- ``margin``: ``score_full − score_chance``, the baseline's margin over chance (D divides by it);
- ``status``: the cell's (ok | failed).

Values are read from results.json as they are; nothing is recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.metrics import scale_of
from bench.results import Results, cell_id, load_results

FIRST = ["task", "architecture", "variant", "seed", "cell", "ablation", "phase"]
LAST = ["dependence", "primary_metric", "primary", "primary_full", "primary_chance", "score", "score_full",
        "score_chance", "margin", "status", "scale"]


def tidy(results: Results | str | Path) -> Any:
    """The tidy table of a run (a run folder, its results.json, or ``Results``): module docstring."""
    import pandas as pd

    res = results if isinstance(results, Results) else load_results(results)
    sc = scale_of(res.scale)
    rows: list[dict[str, Any]] = []
    for c in res.cells:
        full, chance = c.metrics.get(sc.metric), c.chance.get(sc.chance)
        base = {"task": c.task, "architecture": c.architecture, "variant": c.variant, "seed": c.seed, "cell": c.id,
                "primary_metric": c.primary_metric, "primary_full": c.metrics.get(c.primary_metric),
                "primary_chance": c.chance.get(c.primary_metric), "score_full": full, "score_chance": chance,
                "margin": None if None in (full, chance) else full - chance, "status": c.status, "scale": res.scale}
        for name, out in c.ablations.items():
            for rec in out.records:
                key = rec.get("key") if isinstance(rec.get("key"), dict) else {}
                rows.append({**base, "ablation": name, "phase": "test", **flat_key(key),
                             "dependence": rec.get("dependence"), "primary": rec.get("primary"),
                             "score": rec.get("score")})
    for cmp in res.comparisons:
        margin = cmp.score_full - cmp.score_chance
        rows.append({"task": cmp.task, "architecture": cmp.architecture, "variant": "baseline", "seed": cmp.seed,
                     "cell": cell_id(cmp.task, cmp.architecture, "baseline", cmp.seed), "ablation": cmp.ablation,
                     "phase": "train", "key_variant": cmp.variant, "dependence": cmp.dependence.estimate,
                     "primary_metric": next((c.primary_metric for c in res.cells if c.task == cmp.task), None),
                     "primary": cmp.primary_ablated, "primary_full": cmp.primary_full,
                     "primary_chance": cmp.primary_chance, "score": cmp.score_ablated, "score_full": cmp.score_full,
                     "score_chance": cmp.score_chance, "margin": margin, "status": "ok", "scale": res.scale})
    keys = sorted({k for r in rows for k in r if k.startswith("key_")})
    return pd.DataFrame(rows, columns=[*FIRST, *keys, *LAST])


def flat_key(key: dict[str, Any], prefix: str = "key_") -> dict[str, Any]:
    """An ablation setting's key as columns: nested mappings joined with '_', a list as its text (a set of
    blocks is one value of the setting, not several)."""
    out: dict[str, Any] = {}
    for k, v in key.items():
        if isinstance(v, dict):
            out.update(flat_key(v, f"{prefix}{k}_"))
        else:
            out[f"{prefix}{k}"] = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    return out
