"""Planning: a validated config -> the typed resolved study -> the list of cells, without training.

``ResolvedStudy`` is the one object a run carries (the schema-checked config, the plugin defaults
filled in, where it came from); ``plan`` lists every cell (task x architecture x variant x seed)
with what it needs (the edits of a train-time variant, the ablation that defines it). Executors
ship cells to workers; a worker needs nothing but a ``ResolvedStudy`` and a ``Unit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.ablations.base import Ablation
from bench.config import SAFE_ALIAS, StudyConfig, TrainConfig, config_hash, load_config
from bench.data import TaskInfo
from bench.errors import BenchError
from bench.flow import Edit, IdentityFlow, identity_flow
from bench.registry import ABLATIONS, ARCHITECTURES
from bench.rundir import cell_id


@dataclass
class ResolvedStudy:
    """A study ready to run: typed fields for the runner, ``resolved`` (plain dict) for the files."""

    cfg: StudyConfig  # the schema-checked config (typed: train, seeds, bootstrap, ...)
    resolved: dict[str, Any]  # the same with plugin defaults filled in: what config.resolved.yaml holds
    path: Path  # the config file, named in error messages
    plugins: tuple[str, ...] = ()  # --plugin modules/files a worker must import too

    @property
    def name(self) -> str:
        return self.resolved["name"]

    @property
    def seeds(self) -> list[int]:
        return list(self.cfg.seeds)

    @property
    def train(self) -> TrainConfig:
        return self.cfg.train

    @property
    def bootstrap(self) -> int:
        return self.cfg.bootstrap

    @property
    def device(self) -> str:
        return self.cfg.device

    def pairs(self) -> list[tuple[str, str]]:
        return self.cfg.pairs()

    @cached_property
    def hash(self) -> str:
        return config_hash(self.resolved)

    @cached_property
    def yaml(self) -> str:
        """The text of config.resolved.yaml (a re-run compares it byte for byte)."""
        return yaml.safe_dump(self.resolved, sort_keys=False)

    def default_dir(self) -> Path:
        return Path("reports") / "runs" / f"{self.path.stem}-{self.hash}"

    def worker_plugins(self) -> tuple[str, ...]:
        """Every plugin a fresh process must import, as absolute paths where they are files."""
        files = [str((self.path.parent / p).resolve()) if p.endswith(".py") else p for p in self.cfg.plugins]
        own = [str(Path(p).resolve()) if p.endswith(".py") else p for p in self.plugins]
        return tuple(dict.fromkeys([*own, *files]))


def load_study(path: str | Path, overrides: list[str] = (), plugins: tuple[str, ...] = ()) -> ResolvedStudy:
    cfg, resolved = load_config(path, overrides)
    return ResolvedStudy(cfg, resolved, Path(path), tuple(plugins))


@dataclass
class Unit:
    """One cell: what it trains (task, architecture, variant edits) and with which seed."""

    task: str
    arch: str
    variant: str
    seed: int
    edits: dict[str, Edit] = field(default_factory=dict)
    ablation: str | None = None  # the train-time ablation that defines this variant

    @property
    def id(self) -> str:
        return cell_id(self.task, self.arch, self.variant, self.seed)


def build_model(resolved: dict, alias: str, info: TaskInfo) -> torch.nn.Module:
    return ARCHITECTURES.build(resolved["architectures"][alias], info)


def build_ablations(resolved: dict) -> dict[str, Ablation]:
    return {spec["name"]: ABLATIONS.build(spec) for spec in resolved["ablations"]}


def flow_of(resolved: dict, arch: str) -> IdentityFlow:
    """The architecture's identity flow (it does not depend on the task's classes)."""
    return identity_flow(build_model(resolved, arch, TaskInfo("classification", 10)))


def plan(study: ResolvedStudy, ablations: dict[str, Ablation] | None = None) -> list[Unit]:
    """Every cell of the study, in the order ``local`` runs them; nothing is trained or written."""
    ablations = build_ablations(study.resolved) if ablations is None else ablations
    units = []
    for t, a in study.pairs():
        flow = flow_of(study.resolved, a)
        variants: dict[str, tuple[str | None, dict[str, Edit]]] = {"baseline": (None, {})}
        for name, abl in ablations.items():
            if abl.phase == "train" and abl.applicable(flow) is None:
                variants.update({v: (name, e) for v, e in abl.variants(flow).items()})
        for v, (name, _) in variants.items():  # variant names become file names
            if not SAFE_ALIAS.match(v) or "__" in v:
                raise BenchError(f"ablation {name}: variant name {v!r} is not a safe file name; rename it")
        for seed in study.seeds:
            units += [Unit(t, a, v, seed, e, n) for v, (n, e) in variants.items()]
    return units
