"""Identity flow: the one merge-point building block every ablation acts on.

A network is read as identity paths plus transformations that meet at *merge points*:
``Merge('add')`` for residual shortcuts, ``Merge('concat')`` for U-Net skips. In-house models build
with ``Merge`` and ``ResidualBlock``; adapters wrap third-party blocks around them. Ablations never
touch a model's code: they set an ``Edit`` on some merges inside ``edited(model, {...})`` and the
model returns to its exact original behaviour on exit. An idle merge costs one attribute check.

``identity_flow(model)`` derives the declaration — residual blocks in order (stage, shape, shortcut
kind) and skips (level, merge kind, channels) — by walking the modules, so a plugin that uses these
blocks declares its identity flow for free. Two optional declarations serve networks whose unit of
depth holds several residual branches (a pre-norm transformer block: attention, then MLP): a block's
``branch_kind`` (reported per kind by the lesion summaries) and a ``BlockGroup`` around the branches
that move together (``reorder`` exchanges whole groups). Both default to nothing, which leaves every
other declaration as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

MergeKind = Literal["add", "concat"]
Fill = Literal["zero", "mean", "shuffle"]


class Edit:
    """What an ablation does at one merge point; this base leaves it as is. Each subclass changes ONE thing.

    A merge asks its edit three questions per forward pass: does the branch run at all
    (``drops_branch``), what becomes of the identity tensor (``identity``), and of the branch tensor
    (``branch``). Subclasses answer one of them and inherit "unchanged" for the others.
    """

    def drops_branch(self, training: bool) -> bool:
        return False

    def identity(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def branch(self, t: torch.Tensor) -> torch.Tensor:
        return t


@dataclass(frozen=True)
class DropBranch(Edit):
    """Veit's lesion: output the identity alone, y = shortcut(x) (for a plain layer: y = x)."""

    def drops_branch(self, training: bool) -> bool:
        return True


@dataclass(frozen=True)
class FillIdentity(Edit):
    """Replace the identity tensor: ``zero`` (skip removal), its calibrated ``mean`` (no information about
    this image, first-order statistics kept) or ``shuffle`` (the tensor of the next example of the batch:
    real statistics, wrong image; the caller evaluates in a seeded random order, so "next" is a random
    derangement of the whole test set)."""

    fill: Fill
    mean: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.fill == "mean" and self.mean is None:
            raise ValueError("fill='mean' needs a calibrated mean")

    def identity(self, t: torch.Tensor) -> torch.Tensor:
        if self.fill == "zero":
            return torch.zeros_like(t)
        if self.fill == "mean":
            return self.mean.to(t).expand_as(t)
        return t.roll(1, 0)


@dataclass(frozen=True)
class ScaleIdentity(Edit):
    """Multiply the identity tensor by ``beta`` (FreeU's, Skip-Tuning's skip factor): 1 leaves it, 0 zeroes it.

    ``beta = 0`` returns zeros rather than ``0 * t``, so that it is FillIdentity('zero') exactly (an inf or
    NaN in t would otherwise survive as NaN) and a strength curve starts where skip_lesion's zero fill is."""

    beta: float

    def identity(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t) if self.beta == 0 else t * self.beta


@dataclass(frozen=True)
class GateGradient(Edit):
    """Per-example 0/1 masks (B,) that gate the *backward* pass only: a sampled path sends its gradient
    through the branch (``branch_mask`` 1) or the identity (``identity_mask`` 1); forward unchanged."""

    identity_mask: torch.Tensor
    branch_mask: torch.Tensor

    def identity(self, t: torch.Tensor) -> torch.Tensor:
        return _route(t, self.identity_mask)

    def branch(self, t: torch.Tensor) -> torch.Tensor:
        return _route(t, self.branch_mask)


@dataclass(frozen=True)
class KeepSubset(Edit):
    """In training mode only, drop the branch unless ``keep`` (shared by the sampled blocks) picked block
    ``index`` for this forward pass (Veit Sec. 5); evaluation runs every branch."""

    keep: KeepExactly
    index: int = 0

    def drops_branch(self, training: bool) -> bool:
        return training and not self.keep.keeps(self.index)


class KeepExactly:
    """Exactly ``m`` of ``n`` blocks keep their branch in each training forward pass, drawn uniformly.

    One object is shared by the n blocks' Edits; each block asks once per pass (ResidualBlock.forward),
    so a block asking again marks a new pass and a fresh subset is drawn. Draws use the global torch
    RNG, so seeding and checkpoint resume reproduce them.
    """

    def __init__(self, n: int, m: int):
        if not 0 <= m <= n:
            raise ValueError(f"cannot keep {m} of {n} blocks")
        self.n, self.m = n, m
        self._kept: set[int] = set()
        self._asked: set[int] | None = None

    def keeps(self, index: int) -> bool:
        if self._asked is None or index in self._asked:
            self._kept = set(torch.randperm(self.n)[: self.m].tolist())
            self._asked = set()
        self._asked.add(index)
        return index in self._kept


def _route(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Forward: t unchanged. Backward: gradient multiplied by the per-example mask."""
    m = mask.to(t.dtype).view(-1, *([1] * (t.ndim - 1)))
    return t * m + (t * (1 - m)).detach()


class Merge(nn.Module):
    """Where an identity path meets a transformation: add (residual) or concat (U-Net skip).

    ``has_identity=False`` marks a plain layer (VGG, plain twins): no identity is added, but the merge
    point is still declared so that a lesion can delete the layer.
    """

    def __init__(self, kind: MergeKind = "add", *, has_identity: bool = True, level: int = 0,
                 channels: int = 0):
        super().__init__()
        self.kind = kind
        self.has_identity = has_identity
        self.level = level
        self.channels = channels
        self.edit: Edit | None = None

    @property
    def drops_branch(self) -> bool:
        """Read once per forward pass: a ``KeepSubset`` edit in training mode draws the pass's subset here."""
        return self.edit is not None and self.edit.drops_branch(self.training)

    def forward(self, identity: torch.Tensor | None, branch: torch.Tensor | None) -> torch.Tensor:
        e = self.edit
        if e is None:  # idle: the plain merge
            return self._combine(identity, branch)
        if branch is None:  # the block asked drops_branch and skipped its branch
            assert identity is not None, "lesion of a block without a shortcut"
            return identity
        if identity is not None and self.has_identity:
            identity = e.identity(identity)
        return self._combine(identity, e.branch(branch))

    def _combine(self, identity: torch.Tensor | None, branch: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "add":
            return branch + identity if (self.has_identity and identity is not None) else branch
        return torch.cat([branch, identity], dim=1)

    def extra_repr(self) -> str:
        return f"{self.kind}, has_identity={self.has_identity}"


class ResidualBlock(nn.Module):
    """y = post(merge(shortcut(x), branch(x))): a residual block, or a plain layer with has_identity=False.

    ``shortcut`` is None when no shape-compatible identity exists (a plain downsampling layer): such a
    block cannot be lesioned. ``same_shape`` says whether input and output shapes match (reorderable).
    ``branch_kind`` names what the branch computes where a network mixes kinds ("attention", "mlp"), so
    that lesions are summarised per kind; empty: one kind, nothing to break down.
    """

    def __init__(self, branch: nn.Module, shortcut: nn.Module | None = None, *, post: nn.Module | None = None,
                 has_identity: bool = True, same_shape: bool = True, stage: int = 0,
                 shortcut_kind: str = "identity", branch_kind: str = ""):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.merge = Merge("add", has_identity=has_identity)
        self.post = post if post is not None else nn.Identity()
        self.same_shape = same_shape
        self.stage = stage
        self.shortcut_kind = shortcut_kind if shortcut is not None else "none"
        self.branch_kind = branch_kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x) if self.shortcut is not None else None
        branch = None if self.merge.drops_branch else self.branch(x)
        return self.post(self.merge(identity, branch))


class BlockGroup(nn.Sequential):
    """Residual blocks that form one unit of depth and move as one: a transformer block's attention and
    MLP branches. ``reorder`` exchanges whole groups (exchanging an attention branch with an MLP branch
    would test something else), and ``block_lesion`` also lesions each group whole. Runs its blocks in order."""


@dataclass(frozen=True)
class MergePoint:
    """One entry of an architecture's identity-flow declaration."""

    name: str  # module path: of the ResidualBlock for blocks, of the Merge for skips
    role: Literal["block", "skip"]
    merge: str  # module path of the Merge
    kind: MergeKind
    has_identity: bool
    stage: int  # blocks: stage index; skips: U-Net level (0 = finest)
    same_shape: bool = True
    shortcut: str = "identity"  # identity | projection | none
    channels: int = 0
    branch: str = ""  # blocks: the branch's declared kind (ResidualBlock.branch_kind), "" when undeclared
    unit: str = ""  # blocks: module path of the BlockGroup it moves with, "" when it moves alone

    @property
    def lesionable(self) -> bool:
        return self.role == "block" and self.shortcut != "none"


@dataclass(frozen=True)
class IdentityFlow:
    points: tuple[MergePoint, ...]

    @property
    def blocks(self) -> list[MergePoint]:
        return [p for p in self.points if p.role == "block"]

    @property
    def residual_blocks(self) -> list[MergePoint]:
        return [p for p in self.blocks if p.has_identity]

    @property
    def skips(self) -> list[MergePoint]:
        return [p for p in self.points if p.role == "skip"]

    def __getitem__(self, name: str) -> MergePoint:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)


def identity_flow(model: nn.Module) -> IdentityFlow:
    """Walk the modules in registration (= forward) order and list every merge point."""
    owned: set[str] = set()
    groups: list[str] = []
    points: list[MergePoint] = []
    for name, mod in model.named_modules():
        if isinstance(mod, BlockGroup):
            groups.append(name)
        elif isinstance(mod, ResidualBlock):
            owned.add(f"{name}.merge")
            m = mod.merge
            unit = next((g for g in reversed(groups) if name.startswith(f"{g}.")), "")
            points.append(MergePoint(name, "block", f"{name}.merge", m.kind, m.has_identity, mod.stage,
                                     mod.same_shape, mod.shortcut_kind, branch=mod.branch_kind, unit=unit))
        elif isinstance(mod, Merge) and name not in owned:
            points.append(MergePoint(name, "skip", name, mod.kind, mod.has_identity, mod.level,
                                     channels=mod.channels))
    return IdentityFlow(tuple(points))


@contextlib.contextmanager
def edited(model: nn.Module, edits: Mapping[str, Edit]) -> Iterator[nn.Module]:
    """Apply ``{merge point name: Edit}`` for the duration of the block; always restored on exit."""
    flow = identity_flow(model)
    merges = [(model.get_submodule(flow[name].merge), edit) for name, edit in edits.items()]
    previous = set_edits(merges)
    try:
        yield model
    finally:
        set_edits(previous)


def set_edits(merges: list[tuple[nn.Module, Edit | None]]) -> list[tuple[Merge, Edit | None]]:
    """The one writer of ``Merge.edit`` (``edited``, the runner's training variants and the sweep share it):
    set each merge's edit; return what was there, in reverse order, so ``set_edits(returned)`` undoes it."""
    previous = []
    for merge, edit in merges:
        assert isinstance(merge, Merge), f"{type(merge).__name__} is not a Merge"
        previous.append((merge, merge.edit))
        merge.edit = edit
    return previous[::-1]


@contextlib.contextmanager
def reordered(model: nn.Module, order: Mapping[str, str]) -> Iterator[nn.Module]:
    """Put block ``order[a]`` where block ``a`` was, for every key; restored on exit.

    ``order`` is a permutation of its own keys; only shape-compatible blocks may be exchanged (the
    caller checks ``same_shape``).
    """
    assert set(order.values()) == set(order), "reorder must permute the named blocks"
    originals = {name: model.get_submodule(name) for name in order}
    try:
        for slot, source in order.items():
            _set_submodule(model, slot, originals[source])
        yield model
    finally:
        for slot, module in originals.items():
            _set_submodule(model, slot, module)


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)
