"""The ablation contract.

An ablation is a class with a pydantic ``Params`` model (its YAML settings) and a ``phase``:

* ``test``: acts on a trained model. ``run(ctx)`` evaluates it under edits of its merge points
  (``ctx.evaluate(edits)``) and returns records — one per setting, each with metrics and identity
  dependence — plus a summary dependence whose bootstrap replicates feed the verdict.
* ``train``: defines training *variants* (``variants(flow)`` -> {variant name: edits}) that the runner
  trains beside the baseline under the same recipe and seeds.

``applicable(flow)`` returns None or why this architecture cannot honour the request; a request that
names blocks or levels the architecture lacks is a validation error.

Every ablation DECLARES what it measures, as class attributes that are part of its type (checked when
the class is defined, written into results.json, read by the verdict, report and leaderboard — nothing
looks at an ablation's name): ``removes`` (the path it takes away: ``identity``, ``branch`` or
``none``), ``measure`` (``dependence``: the share of the above-chance score lost; ``sufficiency``: the
share of the way from chance to perfect that the kept path alone reaches; ``profile``: a curve with no
single number, e.g. gradient per path length), ``reads`` (``model``, or ``input`` when the result does
not depend on the architecture), ``version`` and the typed ``Summary`` of its ``summary``. The family —
which question it answers — follows from these (``family()``): identity-removing dependence decides
the verdict; branch removal answers Veit et al.'s "how ensemble-like is the network"; sufficiency is
its own row; profiles are descriptive.

Test-time ablations derive from ``TestTimeAblation`` (``run`` is abstract), train-time ones from
``TrainTimeAblation`` (``variants``). Records are typed: most built-ins declare only the ``Key`` of a
record and take ``record_of(Key)``, the fields ``ctx.record`` writes. How an ablation is shown in
report.md is the reporting layer's business (``bench.sections``): nothing here imports it.
"""

from __future__ import annotations

import inspect
import types
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bench.data import Split, Task, TaskInfo
from bench.errors import BenchError
from bench.evaluate import predict_stats
from bench.flow import Edit, IdentityFlow, edited
from bench.metrics import ALL_CLASSES, Outcome, Scale
from bench.sweep import evaluate_shared

Removes = Literal["identity", "branch", "none"]
Measure = Literal["dependence", "sufficiency", "profile"]
Family = Literal["identity", "ensemble", "sufficiency", "descriptive"]
FAMILY_QUESTION: dict[str, str] = {
    "identity": "does the task depend on the identity path? (decides the verdict)",
    "ensemble": "how ensemble-like is the network: how much does removing residual branches cost? (Veit et al.)",
    "sufficiency": "how much of the answer does the input alone carry?",
    "descriptive": "descriptive curves, no single number",
}


class Summary(BaseModel):
    """An ablation's summary in results.json; subclasses add their own typed fields."""

    model_config = ConfigDict(extra="forbid")

    def __getitem__(self, key: str) -> Any:
        """``summary["dependence"]`` reads as it does in results.json, where the summary is a mapping."""
        return getattr(self, key)


class DependenceSummary(Summary):
    """The default for ``measure = "dependence"``: ``dependence`` typed, other keys a plugin adds are kept
    (the built-ins subclass it and forbid unknown keys)."""

    model_config = ConfigDict(extra="allow")
    dependence: float | None = Field(description="The ablation's D: share of the above-chance balanced accuracy lost.")


class Record(BaseModel):
    """One setting's result in results.json (which block, level, fill, k ... and what it measured);
    subclasses type ``key`` and their own fields. Validated when the cell is written."""

    model_config = ConfigDict(extra="forbid")
    key: Any = Field(description="The setting this record measured.")

    def __getitem__(self, key: str) -> Any:
        """``record["key"]`` reads as it does in results.json, where a record is a mapping."""
        return getattr(self, key)


class DependenceRecord(Record):
    """What ``AblationContext.record`` writes: the task metrics under the setting, the raw change of the
    task's primary metric, the balanced-accuracy score and D. A plugin's extra fields are kept (the
    built-ins subclass it with a typed key and forbid unknown fields)."""

    model_config = ConfigDict(extra="allow")
    key: dict[str, Any]
    metrics: dict[str, Any] = Field(description="The task's metrics under this setting (mIoU, accuracy, ...).")
    primary: float = Field(description="The task's primary metric under this setting.")
    delta_primary: float = Field(description="primary minus the intact model's: the raw change, beside D.")
    score: float = Field(description="The study's scale under this setting (Results.scale: all-class balanced accuracy or "
                         "recognition): what D is computed on.")
    dependence: float | None = Field(description="D for this setting (None: the intact model is at chance).")


class Key(BaseModel):
    """The setting one record measured (which block, level, fill, k ...); subclasses type its fields."""

    model_config = ConfigDict(extra="forbid")


def record_of(key: type[Key]) -> type[DependenceRecord]:
    """The Record of an ablation whose records are what ``AblationContext.record`` writes, with ``key``
    typed as ``key`` and no other fields allowed: an ablation then declares only its Key. Named after the
    key (``BlockLesionKey`` -> ``BlockLesionRecord``) and placed in its module; bind it to that name there
    (``BlockLesionRecord = record_of(BlockLesionKey)``) so that it can be imported and pickled."""
    name = key.__name__.removesuffix("Key") + "Record"

    def body(ns: dict[str, Any]) -> None:
        ns.update({"__module__": key.__module__, "__qualname__": name, "__annotations__": {"key": key},
                   "model_config": ConfigDict(extra="forbid")})

    return types.new_class(name, (DependenceRecord,), exec_body=body)


class AblationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TestTimeParams(AblationParams):
    bn_policy: Literal["running", "reestimate"] = Field(
        "running", description="BatchNorm statistics under a lesion: kept (Veit et al.) or re-estimated.")
    bn_batches: int = Field(20, ge=1, le=10_000, description="Training batches used when bn_policy=reestimate.")


def dependence(m_ablated, m_full, m_chance):
    """D = 1 - (m_ablated - m_chance) / (m_full - m_chance): share of above-chance performance lost.

    Called with the study's scale (``bench.metrics.SCALES``: balanced accuracy over all classes, chance
    1/C, or over the object classes, chance 1/K), the same for every task kind."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (np.asarray(m_ablated) - m_chance) / (np.asarray(m_full) - m_chance)


@dataclass
class AblationContext:
    """Everything a test-time ablation needs; ``evaluate`` is the only way it touches the model."""

    model: nn.Module
    flow: IdentityFlow
    task: Task
    device: torch.device
    seed: int
    baseline: Outcome
    chance: Outcome
    weights: np.ndarray  # (B, N) bootstrap resampling counts shared by every outcome of this cell and its seeds
    eval_batch_size: int = 500
    amp: str = "off"
    params: Any = None
    scale: Scale = ALL_CLASSES  # the study's scale for D (``verdict.scale``): every record and summary
    _boot_full: np.ndarray | None = field(default=None, repr=False)
    _boot_chance: np.ndarray | None = field(default=None, repr=False)

    @property
    def info(self) -> TaskInfo:
        return self.task.info

    @property
    def split(self) -> Split:
        return self.task.test

    def evaluate(self, edits: Mapping[str, Edit] | None = None, model: nn.Module | None = None,
                 order: torch.Tensor | None = None) -> Outcome:
        """Per-example statistics under ``edits``; ``order`` evaluates the test set in that order (the
        statistics come back in the original order) — what a shuffle fill's derangement needs."""
        model = model or self.model
        with edited(model, edits or {}), _bn_policy(self, model):
            return predict_stats(model, self.split, self.info, batch_size=self.eval_batch_size,
                                 device=self.device, amp=self.amp, order=order)

    def evaluate_many(self, edit_sets: list[Mapping[str, Edit]], order: torch.Tensor | None = None) -> list[Outcome]:
        """Evaluate the model under each edit set, sharing the unedited prefix of a sequential trunk
        across sets (bench.sweep); falls back to one evaluation per set for other models."""
        if getattr(self.params, "bn_policy", "running") == "running":
            shared = evaluate_shared(self.model, self.flow, list(edit_sets), self.split, self.info,
                                     batch_size=self.eval_batch_size, device=self.device, amp=self.amp, order=order)
            if shared is not None:
                return shared
        return [self.evaluate(e, order=order) for e in edit_sets]

    def score(self, outcome: Outcome) -> float:
        """``outcome`` on the study's measure (``self.scale``)."""
        return outcome.value(self.scale.metric)

    @property
    def chance_score(self) -> float:
        """Chance on the study's measure for the test labels (1/C or 1/K over the classes present)."""
        return self.baseline.value(self.scale.chance)

    def dependence(self, outcome: Outcome) -> float:
        return float(dependence(self.score(outcome), self.score(self.baseline), self.chance_score))

    def boot(self, outcome: Outcome) -> np.ndarray:
        """The study's measure under each bootstrap resample of the test set."""
        return outcome.bootstrap(self.weights, self.scale.metric)

    def chance_boot(self) -> np.ndarray:
        """Chance on the study's measure in each bootstrap resample (1/C of the classes that replicate holds)."""
        if self._boot_chance is None:
            self._boot_chance = self.baseline.bootstrap(self.weights, self.scale.chance)
        return self._boot_chance

    def dependence_boot(self, outcome: Outcome) -> np.ndarray:
        if self._boot_full is None:
            self._boot_full = self.boot(self.baseline)
        return dependence(self.boot(outcome), self._boot_full, self.chance_boot())

    def record(self, key: dict, outcome: Outcome) -> dict:
        """One setting's result: task metrics, the raw change of the task's metric beside D (which is on
        the study's measure, ``score``), and D."""
        return {"key": key, "metrics": outcome.metrics(), "primary": round(outcome.primary, 6),
                "delta_primary": round(outcome.primary - self.baseline.primary, 6),
                "score": round(self.score(outcome), 6), "dependence": _round(self.dependence(outcome))}


def mean_boot(boots: list[np.ndarray]) -> np.ndarray | None:
    """Average bootstrap replicates over an ablation's settings; replicates that are nan everywhere
    (the resampled model was at chance) stay nan and are dropped when the interval is taken."""
    if not boots:
        return None
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(boots), 0)


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


class _bn_policy:
    """Under bn_policy=reestimate: recompute BN running statistics on training data, restore after."""

    def __init__(self, ctx: AblationContext, model: nn.Module):
        self.ctx, self.model, self.saved = ctx, model, None

    def __enter__(self):
        p = self.ctx.params
        if p is None or getattr(p, "bn_policy", "running") != "reestimate":
            return self
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        self.model.train()
        with torch.no_grad():
            for i, (x, _) in enumerate(self.ctx.task.train.batches(self.ctx.eval_batch_size, train=False)):
                if i >= p.bn_batches:
                    break
                self.model(x.to(self.ctx.device))
        self.model.eval()
        return self

    def __exit__(self, *exc):
        for m, mean, var, momentum in self.saved or []:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.momentum = momentum


@dataclass
class AblationResult:
    records: list[dict]
    summary: Summary  # the ablation's typed Summary
    summary_boot: np.ndarray | None = None  # bootstrap replicates of the summary's measure


class Ablation(ABC):
    """Base class: subclasses declare ``removes``/``measure`` (+ ``phase``, ``Params``, ``Summary``,
    ``Record``) and implement ``run`` (test time) or ``variants`` (train time); ``TestTimeAblation`` and
    ``TrainTimeAblation`` make the method abstract and set the phase.

    The declarations are checked when a subclass is defined (``__init_subclass__``): a class that declares
    ``removes``, or a concrete one that inherits it, is refused then with a BenchError naming it. A base
    class in the middle that declares nothing (or stays abstract) is left alone until a config names it."""

    phase: ClassVar[Literal["test", "train"]] = "test"
    Params: ClassVar[type[AblationParams]] = TestTimeParams
    removes: ClassVar[Removes]  # which path the ablation takes away; no default: every ablation says
    measure: ClassVar[Measure] = "dependence"
    # "input" when the result comes from the task alone (identity_readout reads the input, not the model):
    # the verdict then shows it once, as architecture "(input)", not once per architecture
    reads: ClassVar[Literal["model", "input"]] = "model"
    version: ClassVar[int] = 1  # bump when the numbers an ablation reports change meaning
    Summary: ClassVar[type[Summary]] = DependenceSummary
    Record: ClassVar[type[Record]] = DependenceRecord

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "removes" in vars(cls) or (hasattr(cls, "removes") and not inspect.isabstract(cls)):
            cls._check_declarations()

    def __init__(self, **params: Any):
        self.params = self.Params(**params)

    @classmethod
    def family(cls) -> Family:
        """Which question the ablation answers, from what it declares (never from its name)."""
        if cls.measure == "sufficiency":
            return "sufficiency"
        if cls.measure == "profile" or cls.removes == "none":
            return "descriptive"
        return "identity" if cls.removes == "identity" else "ensemble"

    @classmethod
    def _check_declarations(cls) -> None:
        """BenchError naming the class for a declaration that is missing or not one of the allowed values,
        and for a concrete class without the method its phase calls (``run`` / ``variants``)."""
        where = f"ablation {cls.__module__}.{cls.__name__}"
        removes = getattr(cls, "removes", None)
        if removes not in ("identity", "branch", "none") or cls.measure not in ("dependence", "sufficiency", "profile"):
            raise BenchError(f"{where}: declare removes = 'identity' | 'branch' | 'none' and measure = 'dependence' | "
                             f"'sufficiency' | 'profile' (got removes={removes!r}, measure={cls.measure!r}); see "
                             "bench/ablations/base.py")
        if cls.phase not in ("test", "train") or cls.reads not in ("model", "input"):
            raise BenchError(f"{where}: declare phase = 'test' | 'train' and reads = 'model' | 'input' (got "
                             f"phase={cls.phase!r}, reads={cls.reads!r})")
        for kind, base in ((TestTimeAblation, "test"), (TrainTimeAblation, "train")):
            if issubclass(cls, kind) and cls.phase != base:
                raise BenchError(f"{where}: derives from {kind.__name__} but declares phase = {cls.phase!r}")
        if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
            raise BenchError(f"{where}: version must be a whole number from 1 (got {cls.version!r})")
        for attr, base in (("Params", BaseModel), ("Summary", Summary), ("Record", Record)):
            value = getattr(cls, attr)
            if not (isinstance(value, type) and issubclass(value, base)):
                raise BenchError(f"{where}: {attr} must subclass {base.__module__}.{base.__qualname__}")
        if cls.phase == "test" and cls.measure in ("dependence", "sufficiency") and cls.measure not in cls.Summary.model_fields:
            raise BenchError(f"{where}: measure is {cls.measure!r} but its Summary has no {cls.measure!r} field (the "
                             "verdict reads it); declare a Summary with one")
        if not inspect.isabstract(cls):
            method = "run" if cls.phase == "test" else "variants"
            if getattr(cls, method) is getattr(Ablation, method):
                raise BenchError(f"{where}: a {cls.phase}-time ablation implements {method}() (see "
                                 f"{'TestTimeAblation' if cls.phase == 'test' else 'TrainTimeAblation'})")

    @classmethod
    def declaration(cls) -> dict[str, Any]:
        """What results.json records about the ablation (as lm-evaluation-harness records each task's
        version and higher_is_better); a plugin that declares nothing valid, or is still abstract, is
        refused by name."""
        cls._check_declarations()
        if inspect.isabstract(cls):
            missing = ", ".join(f"{m}()" for m in sorted(cls.__abstractmethods__))
            raise BenchError(f"ablation {cls.__module__}.{cls.__name__}: abstract, implement {missing}")
        return {"version": cls.version, "phase": cls.phase, "removes": cls.removes, "measure": cls.measure,
                "reads": cls.reads, "family": cls.family(),
                # lower D: the score survives the removal; higher sufficiency: the kept path alone does more
                "higher_is_better": {"dependence": False, "sufficiency": True}.get(cls.measure)}

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None

    def validate(self, flow: IdentityFlow) -> None:  # noqa: B027  (optional: most settings fit every architecture)
        """Raise ValueError when the settings name something this architecture lacks."""

    def run(self, ctx: AblationContext) -> AblationResult:
        """Test time: evaluate the model under edits (``ctx.evaluate``) and return records and a summary."""
        raise NotImplementedError

    def variants(self, flow: IdentityFlow) -> dict[str, dict[str, Edit]]:
        """Train time: {variant name: edits} trained beside the baseline under the same recipe and seeds."""
        raise NotImplementedError


class TestTimeAblation(Ablation):
    """An ablation of a trained model: implements ``run(ctx)``."""

    __test__ = False  # not a pytest test class, whatever its name says
    phase: ClassVar[Literal["test", "train"]] = "test"
    Params: ClassVar[type[AblationParams]] = TestTimeParams

    @abstractmethod
    def run(self, ctx: AblationContext) -> AblationResult:
        """Evaluate the model under edits (``ctx.evaluate``) and return records and a summary."""


class TrainTimeAblation(Ablation):
    """An ablation that trains variants beside the baseline: implements ``variants(flow)``."""

    phase: ClassVar[Literal["test", "train"]] = "train"
    Params: ClassVar[type[AblationParams]] = AblationParams

    @abstractmethod
    def variants(self, flow: IdentityFlow) -> dict[str, dict[str, Edit]]:
        """{variant name: edits on the merge points}, trained under the baseline's recipe and seeds."""

    def capacity_matched(self, flow: IdentityFlow) -> dict[str, str]:
        """{variant: architecture parameter} for variants built wider so that their trainable parameters match the
        baseline's (``bench.plan.matched_sizes`` finds the value); none by default."""
        return {}
