"""Post-hoc sensitivity checks quoted in reports/README.md: not any study's plan, and never its call.

1. ``no_exclusion``: a committed study's headlines re-assembled by bench's own code with the blind exclusion rule
   removed (every verdict pair's ``max_train_loss`` emptied), at the seeds the study stopped with. Nothing trains:
   it reads the committed cells.
2. ``strong_heads``: camvid_multi_head's per-seed differences (results.json) restricted to the seeds whose global
   baseline margin over chance is at least the conditioning threshold (0.1): descriptive, no interval.

Run from the repository root (about a minute on 2 cores):

    python reports/posthoc/sensitivity.py > reports/posthoc/sensitivity.txt
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import yaml

from bench.driver import load_and_assemble, look_plans, tasks_of
from bench.plan import Plan, resolve_device
from bench.provenance import provenance
from bench.rundir import RunDir

REPORTS = Path(__file__).resolve().parents[1]


def no_exclusion(study: str) -> None:
    folder = REPORTS / study
    config = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    for pair in config["verdict"]:
        pair["max_train_loss"] = {}
    seeds = json.loads((folder / "results.json").read_text())["sequential"]["stopped_at"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{study}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        plan = Plan.build(path, [], ())
        look = next(lk for lk in look_plans(plan) if len(lk.cfg.seeds) == seeds)
        res = load_and_assemble(look, RunDir(folder), tasks_of(look, {}, 1), provenance(resolve_device("cpu")), {})
    print(f"## {study}: no seed excluded, {seeds} seeds (the study's stopping look), intervals at the level that "
          f"look tested at, α = {look.cfg.verdict_pairs()[0].alpha:g}")
    for v in res.verdicts:
        d = v.headline.difference
        print(f"{v.label}: {v.headline.verdict}, {v.headline.seeds} seeds, {d.estimate:.3f} [{d.low:.3f}, {d.high:.3f}]")
        print(f"  per seed: {', '.join(f's{s} {x:.3f}' for s, x in d.per_seed.items())}")
    i = res.interaction
    print(f"interaction {i.second} − {i.first}: {i.call}, {i.seeds} seeds, {i.difference.estimate:.3f} "
          f"[{i.difference.low:.3f}, {i.difference.high:.3f}]\n")


def strong_heads(study: str, label: str, threshold: float = 0.1) -> None:
    res = json.loads((REPORTS / study / "results.json").read_text())
    head = next(v for v in res["verdicts"] if v["label"] == label)["headline"]
    margins = head["conditioning"]["global_margin"]["per_seed"]
    diffs = head["difference"]["per_seed"]
    kept = [s for s in diffs if margins[s] >= threshold]
    weak = sorted((s for s in diffs if margins[s] < threshold), key=int)
    print(f"## {study} `{label}`: seeds whose global margin over chance is >= {threshold}")
    print(f"{len(kept)} of {len(diffs)} seeds; {sum(diffs[s] < 0 for s in kept)} negative; median difference "
          f"{statistics.median(diffs[s] for s in kept):.3f}")
    print(f"left out (margin < {threshold}): {', '.join(f's{s} {margins[s]:.3f}' for s in weak)}\n")


if __name__ == "__main__":
    no_exclusion("shapes_multi_head")
    no_exclusion("shapes_difficulty")
    strong_heads("camvid_multi_head", "joint")
