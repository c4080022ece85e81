"""The plan of a study: every check, once, then the list of cells — nothing trained, nothing written.

``Plan.build(path)`` is what ``bench validate`` prints and what ``bench run`` executes. It loads the
config (schema, registered names, plugin parameters: ``bench.config``), resolves the device, builds
each architecture once (on the meta device: its size is checked without allocating it), runs one
forward pass that must exercise every merge point the architecture declares, checks each ablation
against the identity flows, and lists the cells: task x architecture x variant x seed. A ``Plan`` is
picklable: executors ship it to workers inside each ``bench.cell.CellJob``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml

from bench import limits
from bench.ablations.base import Ablation, TrainTimeAblation
from bench.codehash import component_hash
from bench.config import SAFE_ALIAS, StudyConfig, config_hash, headline_architecture, load_config
from bench.data import TaskInfo
from bench.errors import BenchError
from bench.flow import Edit, IdentityFlow, Merge, edited, identity_flow
from bench.models.joint import joint_model, set_read
from bench.registry import ABLATIONS, ARCHITECTURES, TASKS
from bench.results import cell_id

# an identity flow does not depend on the task's classes: every flow is read off this one
FLOW_INFO = TaskInfo("classification", 10)
# input sizes tried for the forward pass that must run every merge point (the first the model accepts)
PROBE_SIZES = (32, 64, 128, 224)
JOINT_INFO = TaskInfo("segmentation", 10)  # a multi_head network is built for its dense task


@dataclass(frozen=True)
class Unit:
    """One cell: what it trains (task, architecture, variant) and with which seed. Plain data: its edits are
    the plan's to give (``Plan.edits``), so a job pickles without any class a plugin defines."""

    task: str
    arch: str
    variant: str
    seed: int
    ablation: str | None = None  # the train-time ablation that defines this variant

    @property
    def id(self) -> str:
        return cell_id(self.task, self.arch, self.variant, self.seed)


@dataclass
class Plan:
    """A checked study: its config (resolved: plugin defaults filled in), built ablations and identity
    flows, and its cells in the order ``local`` runs them."""

    cfg: StudyConfig
    path: Path  # the config file, named in error messages
    plugins: tuple[str, ...]  # --plugin modules/files a worker must import too
    flows: dict[str, IdentityFlow]  # architecture alias -> its identity flow (read, never changed)
    units: list[Unit]
    notes: list[str]  # what `validate` says beside "ok": ablations that skip an architecture
    _ablations: dict[str, Ablation] | None = field(default=None, repr=False)
    # "architecture:<alias>" / "task:<alias>" / "ablation:<name>" -> the hash of its code (bench.codehash), read
    # once in the driver's process: every cell of one invocation records the same code
    code: dict[str, str] = field(default_factory=dict)
    # architecture alias -> variant -> the architecture parameters it is built with instead (a capacity-matched
    # variant's width: ``matched_sizes``); {} for every variant of a study that matches nothing
    arch_params: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def ablations(self) -> dict[str, Ablation]:
        """The configured ablations, built (again, in a worker, once its plugins are imported)."""
        if self._ablations is None:
            self._ablations = build_ablations(self.cfg)
        return self._ablations

    def __getstate__(self) -> dict[str, Any]:
        """A worker unpickles its job before it imports the study's plugins: the pickle carries the config and
        plain data (units, flows), no built object whose class a plugin defines (ablations, their edits)."""
        return {**self.__dict__, "_ablations": None}

    @classmethod
    def build(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = (),
              plugins: tuple[str, ...] = ()) -> Plan:
        return cls.from_config(load_config(path, list(overrides)), Path(path), plugins)

    @classmethod
    def from_config(cls, cfg: StudyConfig, path: Path, plugins: tuple[str, ...] = ()) -> Plan:
        resolve_device(cfg.device)  # `device: cuda` where there is none: found here
        ablations = build_ablations(cfg)
        used = list(dict.fromkeys(a for _, a in cfg.pairs()))  # config order: the same error every time
        flows = {arch: checked_flow(cfg, arch, path) for arch in used}
        for block in cfg.multi_heads():
            for arch in block.architectures:
                check_joint(cfg, arch, path)
        notes = check_ablations(cfg, ablations, flows, path)
        variants = {arch: train_variants(ablations, flows[arch], path) for arch in used}
        if cfg.headline_only:  # the headline reads a train-time ablation's first declared variant only
            variants = {arch: first_variants(v) for arch, v in variants.items()}
        units = [Unit(t, a, v, seed, name) for t, a in cfg.pairs() for seed in cfg.seeds
                 for v, name in variants[a].items()]
        check_size(cfg, len(units), path)
        arch_params = matched_sizes(cfg, ablations, flows, variants, path, notes)
        for block in cfg.multi_heads():
            notes.append(f"multi_head {', '.join(block.architectures)}: one network per variant and seed with a "
                         f"{block.dense} and a {block.global_} head, trained in each of its two cells (the same "
                         "seed and batches: the same network, at twice the training cost)")
        return cls(cfg, path, tuple(plugins), flows, units, notes, ablations, code_hashes(cfg, ablations), arch_params)

    @property
    def name(self) -> str:
        return self.cfg.name or self.path.stem

    @cached_property
    def resolved(self) -> dict[str, Any]:
        """What config.resolved.yaml and results.json record (``StudyConfig.resolved``)."""
        return self.cfg.resolved()

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

    def edits(self, unit: Unit) -> dict[str, Edit]:
        """The merge-point edits a train-time variant keeps for life ({} for a baseline)."""
        if unit.ablation is None:
            return {}
        return self.ablations[unit.ablation].variants(self.flows[unit.arch])[unit.variant]

    def model(self, unit: Unit, info: TaskInfo, partner: TaskInfo | None = None) -> torch.nn.Module:
        """The unit's model: its architecture as configured, with the parameters its variant overrides. A joint
        unit's (``partner``: the info of its other task, ``Plan.partner``) is the network with both heads, built
        the same way whichever of its two cells asks, and reading the unit's own head."""
        overrides = self.arch_params.get(unit.arch, {}).get(unit.variant, {})
        block = self.cfg.joint_of(unit.arch)
        if block is None:
            return build_model(self.cfg, unit.arch, info, **overrides)
        if partner is None:
            raise ValueError(f"{unit.id}: a multi_head unit needs its partner task's info")
        own = "dense" if unit.task == block.dense else "global"
        dense, glob = (info, partner) if own == "dense" else (partner, info)
        return set_read(joint_model(build_model(self.cfg, unit.arch, dense, **overrides), dense, glob), own)

    def partner(self, unit: Unit) -> str | None:
        """The other task of a joint unit's network (the global task of a dense cell and back); None: separate."""
        block = self.cfg.joint_of(unit.arch)
        if block is None:
            return None
        return block.global_ if unit.task == block.dense else block.dense

    def headline_variant(self, arch: str, ablation: str) -> str:
        """A train-time ablation's declared headline variant on ``arch``: its first, never chosen from the data."""
        return next(u.variant for u in self.units if (u.arch, u.ablation) == (arch, ablation))

    def versions(self, unit: Unit) -> dict[str, int]:
        """The declared versions of the ablations that shape a cell: a variant's train-time ablation, or
        every test-time ablation a baseline cell runs (or finds not applicable)."""
        if unit.ablation is not None:
            return {unit.ablation: self.ablations[unit.ablation].version}
        if unit.variant != "baseline":
            return {}
        return {n: a.version for n, a in self.ablations.items() if a.phase == "test"}

    def first_seeds(self, count: int, alpha: float | None = None) -> Plan:
        """The plan of one look of a study run in seed rounds: its first ``count`` seeds' cells, and the verdict
        tested at ``alpha`` (bench.sequential.look_alpha) when given."""
        seeds = self.cfg.seeds[:count]
        update: dict[str, Any] = {"seeds": seeds}
        if alpha is not None and self.cfg.verdict is not None:
            pairs = [v.model_copy(update={"alpha": alpha}) for v in self.cfg.verdict_pairs()]
            update["verdict"] = pairs if isinstance(self.cfg.verdict, list) else pairs[0]
        return replace(self, cfg=self.cfg.model_copy(update=update), units=[u for u in self.units if u.seed in seeds])

    def code_of(self, unit: Unit) -> dict[str, str]:
        """The hashes of the code that shapes a cell: its architecture's, its task's, and those of the ablations
        whose versions it records (``versions``)."""
        partner = self.partner(unit)  # a joint network is trained on both its tasks
        names = [f"architecture:{unit.arch}", f"task:{unit.task}", *([f"task:{partner}"] if partner else []),
                 *(f"ablation:{n}" for n in self.versions(unit))]
        return {n: self.code[n] for n in names if n in self.code}

    def test_ablations(self, arch: str) -> tuple[dict[str, Ablation], dict[str, str]]:
        """The test-time ablations a baseline cell of ``arch`` runs, and why the others do not apply."""
        run, skipped = {}, {}
        for name, abl in self.ablations.items():
            if abl.phase != "test":
                continue
            reason = abl.applicable(self.flows[arch])
            if reason:
                skipped[name] = reason
            else:
                run[name] = abl
        return run, skipped


def spec_dict(spec: Any) -> dict[str, Any]:
    """``{name: ..., **params}``: how ``Registry.build`` takes a plugin's config entry."""
    return {"name": spec.name, **spec.params}


def code_hashes(cfg: StudyConfig, ablations: dict[str, Ablation]) -> dict[str, str]:
    """Each component's code hash (``bench.codehash``), under the alias the config gives it."""
    return {**{f"architecture:{a}": component_hash(ARCHITECTURES.get(s.name)) for a, s in cfg.architectures.items()},
            **{f"task:{t}": component_hash(TASKS.get(s.name)) for t, s in cfg.tasks.items()},
            **{f"ablation:{n}": component_hash(type(a)) for n, a in ablations.items()}}


def build_ablations(cfg: StudyConfig) -> dict[str, Ablation]:
    return {spec.name: ABLATIONS.build(spec_dict(spec)) for spec in cfg.ablations}


def build_model(cfg: StudyConfig, alias: str, info: TaskInfo, **overrides: Any) -> torch.nn.Module:
    return ARCHITECTURES.build({**spec_dict(cfg.architectures[alias]), **overrides}, info)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device: {name!r} requested but CUDA is not available here; use device: cpu or auto")
    return torch.device(name)


def checked_flow(cfg: StudyConfig, arch: str, path: Path) -> IdentityFlow:
    """The architecture built once, on the meta device where its factory allows (its structure without
    its weights, so `width: 60000` is refused by its parameter count instead of exhausting memory), its
    identity flow, and one forward pass that runs every merge point it declares."""
    where = f"{path}: architectures.{arch}"
    try:
        model = build_on_meta(cfg, arch, FLOW_INFO)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"{where}: {exc}") from None
    n = sum(p.numel() for p in model.parameters())
    if n > limits.MAX_PARAMETERS:
        raise BenchError(f"{where}: {n:,} parameters, over the limit of {limits.MAX_PARAMETERS:,}; lower its "
                         "width or depth")
    flow = identity_flow(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    unused = unexercised_merges(model, flow, (torch.zeros(2, FLOW_INFO.in_channels, s, s, device=device)
                                              for s in PROBE_SIZES))
    if unused:
        raise BenchError(unused_merge_error(where, unused))
    return flow


def build_on_meta(cfg: StudyConfig, arch: str, info: TaskInfo) -> torch.nn.Module:
    """The architecture's structure without its weights where its factory allows (the meta device), else built
    for real: a factory that needs real tensors (pretrained weights, ...)."""
    try:
        with torch.device("meta"):
            return build_model(cfg, arch, info)
    except (BenchError, ValueError, TypeError):
        raise
    except Exception:
        return build_model(cfg, arch, info)


def check_joint(cfg: StudyConfig, arch: str, path: Path) -> None:
    """A multi_head architecture can carry both heads (bench.models.joint): built for a dense task (on the meta
    device where its factory allows), its head is bench's segmentation head, beside which the global head goes."""
    try:
        model = build_on_meta(cfg, arch, JOINT_INFO)
        joint_model(model, JOINT_INFO, FLOW_INFO)
    except (ValueError, TypeError) as exc:
        raise BenchError(f"{path}: architectures.{arch}: multi_head: {exc}") from None


@contextmanager
def merges_run(model: torch.nn.Module, flow: IdentityFlow) -> Iterator[set[str]]:
    """The names of the declared merge points that forward passes run inside the block."""
    called: set[str] = set()
    hooks = [model.get_submodule(p.merge).register_forward_hook(lambda *_, n=p.name: called.add(n))
             for p in flow.points if isinstance(model.get_submodule(p.merge), Merge)]
    try:
        yield called
    finally:
        for h in hooks:
            h.remove()


def unexercised_merges(model: torch.nn.Module, flow: IdentityFlow, inputs: Iterable[torch.Tensor]) -> list[str]:
    """Declared merge points that no forward pass over ``inputs`` runs, counting every input the model accepts
    (a model may use a level's skip only from some resolution on). An ablation of such a merge would measure
    nothing: the 'skip-free' model would be the baseline. [] when no input is accepted: then the data probe of
    ``bench.driver`` checks it on real images."""
    if not flow.points:
        return []
    ran: set[str] | None = None  # None until some input is accepted
    for x in inputs:
        with merges_run(model, flow) as called:
            try:
                with torch.no_grad():
                    model.eval()(x)
            except Exception:  # too small for its depth, or an op the meta device lacks: the next size
                continue
        ran = (ran or set()) | called
    return [] if ran is None else [p.name for p in flow.points if p.name not in ran]


def unused_merge_error(where: str, unused: list[str]) -> str:
    return (f"{where}: declares merge point {unused[0]!r} but its forward pass never runs it ({len(unused)} unused: "
            f"{', '.join(unused[:5])}); call it in forward() or remove it from the declared identity flow")


def check_ablations(cfg: StudyConfig, ablations: dict[str, Ablation], flows: dict[str, IdentityFlow],
                    path: Path) -> list[str]:
    """Every ablation applies to at least one architecture and names only what exists; the verdict's
    ablation applies to its headline architecture. Returns the notes of ablations that skip one."""
    notes = []
    for name, abl in ablations.items():
        ok = []
        for arch, flow in flows.items():
            reason = abl.applicable(flow)
            if reason:
                notes.append(f"{name} skips {arch}: {reason}")
                continue
            try:
                abl.validate(flow)
            except ValueError as exc:
                raise BenchError(f"{path}: ablations.{name} on {arch}: {exc}") from None
            ok.append(arch)
        if not ok:
            raise BenchError(f"{path}: ablations.{name}: applies to none of the architectures "
                             f"({'; '.join(n for n in notes if n.startswith(name))}); remove it or add one it fits")
    for v in cfg.verdict_pairs():
        head = headline_architecture(cfg, v)
        reason = ablations[v.ablation].applicable(flows[head]) if head in flows else None
        if reason:
            raise BenchError(f"{path}: verdict.ablation: {v.ablation} does not apply to the headline "
                             f"architecture {head} ({reason}); choose another ablation or verdict.architecture")
    return notes


def train_variants(ablations: dict[str, Ablation], flow: IdentityFlow, path: Path) -> dict[str, str | None]:
    """The baseline and the variants the train-time ablations add for one architecture, in declared order
    (variant -> its ablation); variant names become file names, so they are checked here."""
    out: dict[str, str | None] = {"baseline": None}
    for name, abl in ablations.items():
        if abl.phase != "train" or abl.applicable(flow) is not None:
            continue
        for v in abl.variants(flow):
            if not SAFE_ALIAS.match(v) or "__" in v or len(v) > limits.MAX_NAME:
                raise BenchError(f"{path}: ablation {name}: variant name {v!r} is not a safe file name (letters, "
                                 f"digits, '_', '-', '.'; no '__'; at most {limits.MAX_NAME} characters); rename it")
            out[v] = name
    return out


def matched_sizes(cfg: StudyConfig, ablations: dict[str, Ablation], flows: dict[str, IdentityFlow],
                  variants: dict[str, dict[str, str | None]], path: Path,
                  notes: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arch: {variant: {parameter: value}}} for the variants a train-time ablation declares capacity-matched
    (``capacity_matched(flow)``: {variant: the architecture parameter to widen}): the value whose live
    parameter count under the variant's edits is closest to the baseline's. Each is said in ``notes``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, abl in ablations.items():
        if not isinstance(abl, TrainTimeAblation):
            continue
        for arch, flow in flows.items():
            if abl.applicable(flow) is not None:
                continue
            for variant, param in abl.capacity_matched(flow).items():
                if variants[arch].get(variant) != name:  # not planned (headline_only keeps first variants)
                    continue
                where = f"{path}: ablations.{name}.match_params on {arch}"
                with torch.random.fork_rng(devices=[]):  # the models it builds draw no number a cell would
                    size, live, unwidened, target = matched_size(cfg, arch, abl.variants(flow)[variant], param, where)
                out.setdefault(arch, {})[variant] = {param: size}
                start = cfg.architectures[arch].params[param]
                notes.append(f"{name} {variant} on {arch}: {param} {size} (live parameters {live:,}; unwidened "
                             f"{unwidened:,}; the baseline at {param} {start}: {target:,})")
    return out


def matched_size(cfg: StudyConfig, arch: str, edits: dict[str, Edit], param: str,
                 where: str) -> tuple[int, int, int, int]:
    """(value of ``param``, the variant's live parameters there and at the configured value, the baseline's): the value closest in live
    parameters (``live_parameters``) to the baseline as configured, searched upward from its own value
    (in steps of a quarter, then bisecting: the count grows with the width); a tie takes the larger."""
    start = cfg.architectures[arch].params.get(param)
    if not isinstance(start, int) or isinstance(start, bool):
        raise BenchError(f"{where}: architecture {cfg.architectures[arch].name} has no whole-number {param!r} "
                         "parameter to widen; set match_params: false")

    counts: dict[int, int] = {}

    def live(value: int) -> int:
        if value not in counts:
            counts[value] = live_parameters(build_model(cfg, arch, FLOW_INFO, **{param: value}), edits, where)
        return counts[value]

    target = sum(p.numel() for p in build_model(cfg, arch, FLOW_INFO).parameters())  # every baseline entry trains
    low, high = start, start
    while live(high) < target:
        low, high = high, min(max(high + 1, high * 5 // 4), limits.MAX_WIDTH)
        if low == high:
            raise BenchError(f"{where}: no {param} up to {limits.MAX_WIDTH} matches the baseline; set match_params: false")
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if live(mid) < target else (low, mid)
    size = min({low, high}, key=lambda v: (abs(live(v) - target), -v))
    n = sum(p.numel() for p in build_model(cfg, arch, FLOW_INFO, **{param: size}).parameters())
    if n > limits.MAX_PARAMETERS:
        raise BenchError(f"{where}: {param} {size} has {n:,} parameters, over the limit of {limits.MAX_PARAMETERS:,}")
    return size, live(size), live(start), target


def live_parameters(model: torch.nn.Module, edits: dict[str, Edit], where: str) -> int:
    """The parameter count less the entries ``edits`` cut off from training: those with a gradient in the unedited
    model and none under the edits (same weights, same seeded images, training mode; the caller forks the RNG).
    A zero-filled skip keeps the weights that read it in the parameter count but gives them no gradient; an
    entry that a small probe leaves without gradient either way (a corner tap at a 2x2 bottleneck) still counts."""
    before, after = (_gradients(model, e, where) for e in ({}, edits))
    cut = sum(int(((b != 0) & (a == 0)).sum()) for b, a in zip(before, after))
    return sum(p.numel() for p in model.parameters()) - cut


def _gradients(model: torch.nn.Module, edits: dict[str, Edit], where: str) -> list[torch.Tensor]:
    """Every parameter's gradient of a random projection of the output on 8 seeded images of the smallest
    probe size the model accepts, under ``edits``."""
    model.train()
    for size in PROBE_SIZES:
        torch.manual_seed(0)
        x = torch.randn(8, FLOW_INFO.in_channels, size, size)
        model.zero_grad(set_to_none=True)
        try:
            with edited(model, edits):
                out = model(x)
        except Exception:  # too small for its depth: the next size
            continue
        (out * torch.randn(out.shape)).sum().backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad for p in model.parameters()]
    raise BenchError(f"{where}: the model accepts none of the probe inputs ({', '.join(map(str, PROBE_SIZES))} pixels)")


def first_variants(variants: dict[str, str | None]) -> dict[str, str | None]:
    """The baseline and each train-time ablation's first declared variant (the one a headline reads)."""
    out: dict[str, str | None] = {}
    for variant, ablation in variants.items():
        if ablation is None or ablation not in out.values():
            out[variant] = ablation
    return out


def check_size(cfg: StudyConfig, cells: int, path: Path) -> None:
    """A study whose cell count or bootstrap memory is absurd is refused (bench.limits)."""
    used = {t for t, _ in cfg.pairs()}
    tests = [declared_test_size(spec.params) for t, spec in cfg.tasks.items() if t in used]
    try:
        limits.study_size(cells, max(tests), cfg.bootstrap)
    except BenchError as exc:
        raise BenchError(f"{path}: {exc}") from None


def declared_test_size(params: dict[str, Any]) -> int:
    """The test split size a task's parameters declare (n_test, test_subset), else the documented assumption."""
    for key in ("n_test", "test_subset"):
        if isinstance(params.get(key), int):
            return params[key]
    return limits.ASSUMED_TEST_EXAMPLES
