"""The results contract: ``results.json`` is the source of truth; reports, CSV and plots derive from it.

Schema (version 1), as typed pydantic models:

* ``Results``: ``schema_version``, ``study`` (name), ``config`` (the resolved config), ``provenance``
  (versions, git commit and dirty flag, device), ``timings`` (wall seconds per stage), ``cells``,
  ``comparisons``, ``verdict``.
* ``Cell``: one trained model = (task, architecture, variant, seed). ``variant`` is ``baseline`` or a
  train-time ablation's variant (e.g. ``no_identity``). Holds ``status`` (ok | failed + ``error``),
  ``metrics`` (primary first: accuracy or miou; segmentation adds pixel/boundary/interior accuracy
  and ``per_class_iou``), ``chance`` (the same metrics for the majority-class predictor), training
  log, and ``ablations``: for each test-time ablation its ``settings``, ``records`` (one per setting:
  ``key``, ``metrics``, ``primary``, ``dependence``) and ``summary`` (with a bootstrap CI).
* ``Comparison``: a train-time ablation's identity dependence: variant vs baseline, same task, seed.
* ``Verdict``: dense vs global identity dependence per architecture and ablation, with 95% CIs.

Identity dependence D = 1 - (m_ablated - m_chance) / (m_full - m_chance); m is the primary metric.
Every field, its meaning, and how D and the verdict are computed: docs/results.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bench.errors import BenchError

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Model):
    estimate: float | None
    low: float | None
    high: float | None


class AblationOutput(_Model):
    phase: Literal["test"] = "test"
    settings: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    summary_ci: Interval | None = None
    wall_s: float


class Cell(_Model):
    id: str
    task: str
    architecture: str
    variant: str
    seed: int
    status: Literal["ok", "failed"]
    error: str | None = None
    task_kind: str
    primary_metric: str
    n_test: int
    n_params: int | None = None
    pretraining: dict[str, Any] | None = None  # encoder weights a model started from (None: random init)
    metrics: dict[str, Any] = {}
    chance: dict[str, Any] = {}
    train: dict[str, Any] = {}
    identity_flow: dict[str, Any] = {}
    ablations: dict[str, AblationOutput] = {}
    not_applicable: dict[str, str] = {}
    timings: dict[str, float] = {}
    # the code and machine that computed this cell (a resumed run may mix invocations); None in old runs
    computed_with: dict[str, Any] | None = None


class Comparison(_Model):
    ablation: str
    task: str
    architecture: str
    variant: str
    seed: int
    primary_full: float
    primary_ablated: float
    primary_chance: float
    dependence: Interval


class VerdictRow(_Model):
    architecture: str
    ablation: str
    measure: Literal["dependence", "sufficiency"] = "dependence"
    seeds: int
    dense: Interval
    global_: Interval
    difference: Interval
    verdict: Literal["supported", "contradicted", "inconclusive"]


class Verdict(_Model):
    dense_task: str
    global_task: str
    headline: VerdictRow | None
    rows: list[VerdictRow]
    method: str


class Results(_Model):
    schema_version: int = SCHEMA_VERSION
    study: str
    config: dict[str, Any]
    provenance: dict[str, Any]
    timings: dict[str, float]
    cells: list[Cell]
    comparisons: list[Comparison] = []
    verdict: Verdict | None = None


def load_results(path: str | Path) -> Results:
    """Read ``results.json`` (or a run folder holding one) and check it against the schema."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise BenchError(f"{path}: no results.json here; pass a run folder written by `bench run`")
    try:
        return Results.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise BenchError(f"{path}: not a valid results.json (schema v{SCHEMA_VERSION}): {first}") from None
