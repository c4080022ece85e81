"""The library API: run a study and load its results from Python (the CLI is a thin layer over it).

    import bench
    results = bench.run("configs/quickstart.yaml", seeds=[0, 1], train={"epochs": 1})
    print(results.verdict.headline.verdict)
    again = bench.load(results_dir)          # any run folder, or its results.json

As lm-evaluation-harness's ``simple_evaluate``: what ``bench run`` does, with overrides as keyword
arguments (a nested mapping sets nested keys, as ``--set train.epochs=1`` does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.driver import Options, run_study
from bench.executors import Executor, make_executor
from bench.plan import Plan
from bench.results import Results, load_results


def run(config: str | Path, *, out: str | Path | None = None, restart: bool = False,
        executor: Executor | str | None = None, plugins: tuple[str, ...] = (), progress: bool = False,
        **overrides: Any) -> Results:
    """Run (or resume) the study ``config`` describes; its ``Results`` (also in ``<out>/results.json``).

    overrides: config keys, e.g. ``seeds=[0, 1]`` or ``train={"epochs": 1}`` (nested keys are set one by one,
    so the other training keys keep their values). executor: an ``Executor`` or a kind (local, processes,
    ray, slurm); default the config's ``executor``."""
    plan = Plan.build(config, as_set_options(overrides), tuple(plugins))
    chosen = executor if isinstance(executor, Executor) else make_executor(plan.cfg.executor, executor)
    run_dir = run_study(plan, chosen, Options(out=Path(out) if out is not None else None, restart=restart,
                                              show_progress=progress))
    return load(run_dir)


def load(run_dir: str | Path) -> Results:
    """A run folder's results (or a results.json path), checked against the schema."""
    return load_results(run_dir)


def as_set_options(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    """Keyword overrides as ``--set key.path=value`` items (the values written as JSON, which YAML reads)."""
    items = []
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            items += as_set_options(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value)}")  # JSON is YAML: strings stay strings
    return items
