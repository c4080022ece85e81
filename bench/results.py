"""The results contract: ``results.json`` is the source of truth; reports, CSV and plots derive from it.

Schema (version 2), as typed pydantic models:

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
* ``Verdict``: dense vs global, per architecture and ablation, in families (identity: decides;
  ensemble; sufficiency), with intervals over seeds and test examples, per-seed values, Holm-adjusted
  p for exploratory rows and a conditioning check on every row.

Identity dependence D = 1 - (m_ablated - m_chance) / (m_full - m_chance); m is the study's scale (``scale``:
balanced accuracy over all classes, or recognition over the object classes; ``verdict.scale``).
Every field, its meaning, and how D and the verdict are computed: docs/results.md.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_serializer,
    with_config,
)
from typing_extensions import TypedDict

from bench.errors import BenchError

SCHEMA_VERSION = 2
# a cell id is <task>__<arch>__<variant>__s<seed>; aliases and variants are SAFE_NAME without '__'
_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]*?"
CELL_ID = re.compile(rf"^{_PART}__{_PART}__{_PART}__s\d+$")


def cell_id(task: str, arch: str, variant: str, seed: int) -> str:
    """The id of a cell: its name in results.json and its files' stem in the run folder."""
    return f"{task}__{arch}__{variant}__s{seed}"

# what changed in each version, for the one-line message that refuses an older file
SCHEMA_CHANGES = {2: "D on balanced accuracy, verdict families, per-seed decisions (bench 0.2.0)"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _keep_order(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate, then give the keys back in the file's order: a TypedDict puts its declared keys first, and
    a re-written results.json must keep its own order (the primary metric first)."""
    out = handler(value)
    return {k: out[k] for k in value if k in out} if isinstance(value, dict) and isinstance(out, dict) else out


# The open mappings of results.json: any key may appear (a plugin's metric, an ablation's own summary field),
# but the keys readers compute with are typed, so a wrong type is one line naming it, not a traceback.
_OPEN = with_config(ConfigDict(extra="allow"))  # not the models' 'forbid': extra_items types the other keys


@_OPEN
class _Metrics(TypedDict, total=False, extra_items=float | None):
    """A metric is a number (None: undefined); the per-class ones are lists (None for an absent class)."""

    per_class_iou: list[float | None] | None
    per_class_recall: list[float | None] | None


@_OPEN
class _Record(TypedDict, total=False, extra_items=Any):
    """One setting's result; ``key`` is the ablation's own (bench.ablations.base.Record)."""

    metrics: Annotated[_Metrics, WrapValidator(_keep_order)]
    primary: float | None
    score: float | None
    dependence: float | None


@_OPEN
class _Summary(TypedDict, total=False, extra_items=Any):
    dependence: float | None
    sufficiency: float | None


@_OPEN
class _Train(TypedDict, total=False, extra_items=Any):
    wall_s: float | None


@_OPEN
class _Spec(TypedDict, total=False, extra_items=Any):
    """A task or architecture as the config resolved it: its registered name and its parameters."""

    name: str


@_OPEN
class _AblationSpec(TypedDict, extra_items=Any):
    name: str


@_OPEN
class _Config(TypedDict, total=False, extra_items=Any):
    """The resolved config, checked for what readers use (the leaderboard's specs, the ablations' order)."""

    name: str
    tasks: dict[str, Annotated[_Spec, WrapValidator(_keep_order)]]
    architectures: dict[str, Annotated[_Spec, WrapValidator(_keep_order)]]
    ablations: list[Annotated[_AblationSpec, WrapValidator(_keep_order)]]


@_OPEN
class _Declaration(TypedDict, total=False, extra_items=Any):
    """An ablation's declaration as results.json records it (``Results.ablations``)."""

    version: int
    phase: str
    removes: str
    measure: str
    family: str


Metrics = Annotated[_Metrics, WrapValidator(_keep_order)]
Record = Annotated[_Record, WrapValidator(_keep_order)]
Summary = Annotated[_Summary, WrapValidator(_keep_order)]
Train = Annotated[_Train, WrapValidator(_keep_order)]
ResolvedConfig = Annotated[_Config, WrapValidator(_keep_order)]
Declaration = Annotated[_Declaration, WrapValidator(_keep_order)]


class Interval(_Model):
    estimate: float | None
    low: float | None
    high: float | None


class AblationOutput(_Model):
    phase: Literal["test"] = "test"
    version: int = 1  # the ablation's declared version when it ran
    settings: dict[str, Any]
    records: list[Record]
    summary: Summary
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
    # architecture parameters this variant was built with instead of the config's (a capacity-matched width)
    architecture_overrides: dict[str, Any] = {}
    pretraining: dict[str, Any] | None = None  # encoder weights a model started from (None: random init)
    metrics: Metrics = {}
    chance: Metrics = {}
    train: Train = {}
    identity_flow: dict[str, Any] = {}
    ablations: dict[str, AblationOutput] = {}
    not_applicable: dict[str, str] = {}
    timings: dict[str, float] = {}
    # the code and machine that computed this cell (a resumed run may mix invocations); None in old runs
    computed_with: dict[str, Any] | None = None
    ablation_versions: dict[str, int] = {}  # the declared versions of the ablations that shaped this cell
    # content hashes of the code that shaped this cell (architecture, task, ablations: bench.codehash); {} before 0.3.1
    code: dict[str, str] = {}


class Comparison(_Model):
    ablation: str
    task: str
    architecture: str
    variant: str
    seed: int
    primary_full: float
    primary_ablated: float
    primary_chance: float
    score_full: float  # the study's scale (Results.scale): the scale D is computed on
    score_ablated: float
    score_chance: float
    dependence: Interval
    headline: bool = False  # the ablation's first (declared) variant: the one the verdict reads


class Decision(_Model):
    """A mean over seeds with its interval (bench.stats.interval) and the per-seed values behind it."""

    estimate: float | None
    low: float | None
    high: float | None
    se: float | None = None
    df: int | None = None
    p: float | None = None
    dropped_replicates: int = 0
    test_sd: float | None = None  # the median rule's test-set term (bench.stats.median_interval; bench.power reads it)
    per_seed: dict[str, float | None] = {}


class Conditioning(_Model):
    """D divides by the baseline's margin over chance: both baselines must clear ``threshold`` on D's denominator
    (``dense_margin``/``global_margin``: all classes, or recognition when ``scale`` says so) and, on the all-class
    measure, for a task with a background class, over its object classes alone (bench.metrics.scales_of)."""

    threshold: float
    scale: str | None = None  # what dense_margin/global_margin are on; None: all classes (every study before 0.3.2)
    dense_margin: Decision | None
    global_margin: Decision | None
    dense_object_margin: Decision | None = None
    global_object_margin: Decision | None = None
    ok: bool
    note: str


class VerdictRow(_Model):
    family: Literal["identity", "ensemble", "sufficiency"]
    role: Literal["headline", "exploratory"]
    architecture: str
    ablation: str
    measure: Literal["dependence", "sufficiency"] = "dependence"
    seeds: int
    dense: Decision
    global_: Decision
    difference: Decision
    p_holm: float | None = None  # exploratory rows: adjusted within their family
    # configured seeds with no value on both sides (a failed or diverged cell, an undefined D): listed,
    # never silently dropped — a diverged no-identity variant is itself a sign of identity dependence
    missing_seeds: list[int] = []
    excluded_seeds: dict[str, str] = {}  # seed -> why: the config's blind non-convergence rule (max_train_loss)
    conditioning: Conditioning
    # identity rows: supported | contradicted | inconclusive; other families: dense higher | global higher |
    # inconclusive (they never count for or against the claim); any row: underpowered | ill-conditioned
    verdict: Literal["supported", "contradicted", "inconclusive", "underpowered", "ill-conditioned",
                     "dense higher", "global higher"]


class Sensitivity(_Model):
    """The headline re-measured on the other scale: not the call, which stays on the pre-specified scale, but
    what that scale can hide. Under all classes: D over the object classes of each task that has a background
    (the other task's D unchanged); an ablated dense model that still finds the objects but no longer tells them
    apart keeps its background recall, so its all-class D stays well below 1 while a global model's can reach 1.
    Under recognition: D over all classes of both tasks, the scale of every study before bench 0.3.2."""

    scale: str  # "object classes" or "all classes" (bench.metrics.CONDITIONING_SCALES names)
    tasks: list[str]  # the tasks whose D is re-measured
    dense: Decision
    global_: Decision
    difference: Decision


class Localisation(_Model):
    """The headline's dense task re-read on localisation — object vs background, chance 1/2 — beside the call:
    recognition leaves out whether the ablated model still finds the objects, which this measures (a dense task
    only: a global task has no pixels to place)."""

    task: str
    dependence: Decision  # D on localisation_balanced_accuracy, median over the headline's seeds


class Verdict(_Model):
    label: str | None = None  # the pair's name when the config lists several (e.g. coarse / fine)
    dense_task: str
    global_task: str
    alpha: float
    min_seeds: int
    headline: VerdictRow | None
    headline_missing: str | None = None  # why there is no headline row
    rows: list[VerdictRow]
    method: str
    sensitivity: Sensitivity | None = None  # the headline on the other scale (train-time headlines)
    localisation: Localisation | None = None  # the dense task's D on object-vs-background (train-time headlines)
    scale: str = "balanced_accuracy"  # the scale D is read on (bench.metrics.SCALES); older results: all classes


# the verdict rule's direction on (second) − (first) -> the interaction's call; the driver reads it back to stop
INTERACTION_CALL = {"supported": "second higher", "contradicted": "first higher"}


class Interaction(_Model):
    """Does the headline's D_dense − D_global differ between two verdict pairs (``second`` − ``first``)?

    Per seed, the difference of the two pairs' differences, and replicate b of one minus replicate b of
    the other. Test sets of different sizes are resampled independently, so the variances add; test sets
    of the same size get the same resampled indices (``bench.metrics.shared_weights``), a paired bootstrap
    (right for ``synthetic_detail``, whose coarse and fine test image i share layout, colour and noise)."""

    first: str
    second: str
    architecture: str
    ablation: str
    seeds: int
    difference: Decision  # (D_dense − D_global)[second] − (D_dense − D_global)[first]
    call: Literal["second higher", "first higher", "no detectable difference", "underpowered", "ill-conditioned",
                  "undefined", "missing"]  # undefined: a seed's value is not finite (a D undefined), so no interval
    note: str


class Look(_Model):
    """One look of a study run in seed rounds: the seeds it had and each verdict pair's headline then."""

    seeds: int
    headlines: dict[str, dict[str, Any]]  # pair label -> {estimate, low, high, call}
    interaction: dict[str, Any] | None = None  # stop: interaction: {estimate, low, high, call} of the two pairs'

    @model_serializer(mode="wrap")
    def _omit_no_interaction(self, handler: SerializerFunctionWrapHandler) -> dict:
        """Written only for a ``stop: interaction`` study: every results.json before it re-assembles the same."""
        out = handler(self)
        if isinstance(out, dict) and out.get("interaction") is None:
            out.pop("interaction", None)
        return out


class Sequential(_Model):
    """Seeds until decided (bench.sequential): the plan, every look taken, and where and why it stopped."""

    start: int
    step: int
    max: int
    stop: Literal["decided", "halfwidth", "interaction"]
    halfwidth: float | None = None
    alpha: float  # the overall error rate of a call
    alpha_per_look: float  # what each look tested at (Pocock's level for stop: decided and interaction)
    planned_looks: list[int]
    looks: list[Look]
    stopped_at: int  # seeds at the look the study stopped at
    reason: str


class Invocation(_Model):
    """One `bench run` on the folder: a resumed or re-assembled study keeps every earlier one."""

    git_commit: str | None
    git_dirty: bool | None
    study_s: float  # its wall time
    cells_computed: int | None  # cells it trained; 0 = a re-assembly; None = recorded before bench 0.2.1
    # the analysis plan (the config file) as git knew it: bench.provenance.plan_record; None before bench 0.3.1
    plan: dict[str, Any] | None = None


class Results(_Model):
    schema_version: int = SCHEMA_VERSION
    study: str
    config: ResolvedConfig
    provenance: dict[str, Any]
    timings: dict[str, float]
    scale: str = "balanced_accuracy"  # the metric D is computed on
    ablations: dict[str, Declaration] = {}  # each ablation's declaration: version, removes, measure, family
    cells: list[Cell]
    comparisons: list[Comparison] = []
    verdict: Verdict | None = None  # the (first) pair's verdict: what every single-verdict reader uses
    verdicts: list[Verdict] = []  # every pair's verdict when the config lists several, in config order
    interaction: Interaction | None = None  # exactly two listed pairs on the same headline
    interactions: list[Interaction] = []  # more than two listed pairs: every two that share a headline ablation
    invocations: list[Invocation] = []  # every `bench run` on the folder, oldest first; wall time = their sum
    code: dict[str, str] = {}  # component -> content hash of the code the cells were computed with (bench.codehash)
    sequential: Sequential | None = None  # a study run in seed rounds: its looks and where it stopped

    def all_verdicts(self) -> list[Verdict]:
        """Every pair's verdict, in config order: ``verdicts`` when the config lists several, else the one (or none)."""
        return self.verdicts or ([self.verdict] if self.verdict is not None else [])

    @model_serializer(mode="wrap")
    def _omit_empty_interactions(self, handler: SerializerFunctionWrapHandler) -> dict:
        """``interactions`` is written only when a study has them (more than two pairs): every results.json
        written before it existed re-assembles to the same file."""
        out = handler(self)
        if isinstance(out, dict) and not out.get("interactions"):
            out.pop("interactions", None)
        return out


def invocations_so_far(results_file: Path) -> list[Invocation]:
    """The invocations recorded in a folder's previous results.json (one reconstructed from ``timings.study``
    and ``provenance`` if it predates the list); none if there is no readable one."""
    try:
        old = load_results(results_file)
    except BenchError:
        return []
    if old.invocations:
        return list(old.invocations)
    if "study" not in old.timings:
        return []
    return [Invocation(git_commit=old.provenance.get("git_commit"), git_dirty=old.provenance.get("git_dirty"),
                       study_s=old.timings["study"], cells_computed=None)]


class NotStrictJson(ValueError):
    """A number bench never writes (NaN, Infinity, one beyond float range): results.json is written with
    ``allow_nan=False``, so such a value was put there by hand, and readers would fail on it."""


def _no_constant(name: str) -> float:
    raise NotStrictJson(f"{name} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJson(f"{text[:40]} is beyond the range of a number")
    return value


def _bounded(text: str) -> int:
    if len(text.lstrip("-")) > 18:  # beyond int64: counts and seeds never are
        raise NotStrictJson(f"{text[:40]}... is beyond the range of a whole number")
    return int(text)


def load_results(path: str | Path) -> Results:
    """Read ``results.json`` (or a run folder holding one) and check it against the schema."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise BenchError(f"{path}: no results.json here; pass a run folder written by `bench run`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant, parse_float=_finite,
                          parse_int=_bounded)
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text (byte {exc.start}), so not a results.json; re-run the study") from None
    except NotStrictJson as exc:
        raise BenchError(f"{path}: not a valid results.json (schema v{SCHEMA_VERSION}): {exc} (bench writes finite "
                         "numbers only); re-run the study") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BenchError(f"{path}: not a valid results.json (schema v{SCHEMA_VERSION}): not JSON "
                         f"({str(exc).splitlines()[0][:120]}); re-run the study") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        if version < SCHEMA_VERSION:
            raise BenchError(f"{path}: schema v{version} was written by an older bench; v{SCHEMA_VERSION} changed "
                             f"{SCHEMA_CHANGES[SCHEMA_VERSION]}: re-run the study with this bench (same config) to "
                             "compare it")
        raise BenchError(f"{path}: schema v{version} is newer than this bench reads (v{SCHEMA_VERSION}); upgrade bench")
    try:  # strict: a number written as a string or a bool is a damaged file, not a value to coerce
        return Results.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BenchError(f"{path}: not a valid results.json (schema v{SCHEMA_VERSION}): {first_error(exc)}; "
                         "re-run the study") from None


def first_error(exc: ValidationError) -> str:
    """``cells.0.metrics.accuracy: Input should be a valid number``: where the first error is and what it is,
    on one line (and how many more there are)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the top level"
    more = exc.error_count() - 1
    msg = " ".join(str(err["msg"]).split())
    return f"{where}: {msg}" + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
