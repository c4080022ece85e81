"""Identity flow: the one merge-point building block every ablation acts on.

A network is read as identity paths plus transformations that meet at *merge points*:
``Merge('add')`` for residual shortcuts, ``Merge('concat')`` for U-Net skips. In-house models build
with ``Merge`` and ``ResidualBlock``; adapters wrap third-party blocks around them. Ablations never
touch a model's code: they set an ``Edit`` on some merges inside ``edited(model, {...})`` and the
model returns to its exact original behaviour on exit. An idle merge costs one attribute check.

``identity_flow(model)`` derives the declaration — residual blocks in order (stage, shape, shortcut
kind) and skips (level, merge kind, channels) — by walking the modules, so a plugin that uses these
blocks declares its identity flow for free.
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


@dataclass(frozen=True)
class Edit:
    """What an ablation does at one merge point. All fields default to 'leave as is'.

    drop_branch: output the identity alone, y = shortcut(x) (Veit's lesion; for a plain layer: y = x).
    fill: replace the identity tensor by zeros (skip removal), its calibrated mean, or a batch shuffle.
    identity_grad / branch_grad: per-example 0/1 masks (B,) that gate the *backward* pass only, so a
        sampled path sends its gradient through the branch or the shortcut (Veit Fig. 6).
    keep / keep_index: in training mode only, drop the branch unless ``keep`` (shared by the sampled
        blocks) picked block ``keep_index`` for this forward pass (Veit Sec. 5); eval runs every branch.
    """

    drop_branch: bool = False
    fill: Fill | None = None
    mean: torch.Tensor | None = None
    identity_grad: torch.Tensor | None = None
    branch_grad: torch.Tensor | None = None
    keep: KeepExactly | None = None
    keep_index: int = 0


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
        """Read once per forward pass: with ``Edit.keep`` in training mode it draws the pass's subset."""
        e = self.edit
        return e is not None and (e.drop_branch or (e.keep is not None and self.training
                                                    and not e.keep.keeps(e.keep_index)))

    def forward(self, identity: torch.Tensor | None, branch: torch.Tensor | None) -> torch.Tensor:
        if self.edit is None:  # idle: the plain merge
            return self._combine(identity, branch)
        e = self.edit
        if e.drop_branch or (e.keep is not None and branch is None):
            assert identity is not None, "lesion of a block without a shortcut"
            return identity
        if identity is not None and self.has_identity:
            identity = self.edit_identity(identity)
        if e.branch_grad is not None and branch is not None:
            branch = _route(branch, e.branch_grad)
        return self._combine(identity, branch)

    def edit_identity(self, identity: torch.Tensor) -> torch.Tensor:
        """The identity tensor after this merge's edit; adapters call it where third-party code merges."""
        e = self.edit
        if e is None:
            return identity
        if e.fill == "zero":
            identity = torch.zeros_like(identity)
        elif e.fill == "mean":
            assert e.mean is not None, "fill='mean' needs a calibrated mean"
            identity = e.mean.to(identity).expand_as(identity)
        elif e.fill == "shuffle":
            perm = torch.roll(torch.arange(identity.shape[0], device=identity.device), 1)
            identity = identity[perm]
        if e.identity_grad is not None:
            identity = _route(identity, e.identity_grad)
        return identity

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
    """

    def __init__(self, branch: nn.Module, shortcut: nn.Module | None = None, *, post: nn.Module | None = None,
                 has_identity: bool = True, same_shape: bool = True, stage: int = 0,
                 shortcut_kind: str = "identity"):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.merge = Merge("add", has_identity=has_identity)
        self.post = post if post is not None else nn.Identity()
        self.same_shape = same_shape
        self.stage = stage
        self.shortcut_kind = shortcut_kind if shortcut is not None else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x) if self.shortcut is not None else None
        branch = None if self.merge.drops_branch else self.branch(x)
        return self.post(self.merge(identity, branch))


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
    points: list[MergePoint] = []
    for name, mod in model.named_modules():
        if isinstance(mod, ResidualBlock):
            owned.add(f"{name}.merge")
            m = mod.merge
            points.append(MergePoint(name, "block", f"{name}.merge", m.kind, m.has_identity, mod.stage,
                                     mod.same_shape, mod.shortcut_kind))
        elif isinstance(mod, Merge) and name not in owned:
            points.append(MergePoint(name, "skip", name, mod.kind, mod.has_identity, mod.level,
                                     channels=mod.channels))
    return IdentityFlow(tuple(points))


@contextlib.contextmanager
def edited(model: nn.Module, edits: Mapping[str, Edit]) -> Iterator[nn.Module]:
    """Apply ``{merge point name: Edit}`` for the duration of the block; always restored on exit."""
    flow = identity_flow(model)
    merges: list[tuple[Merge, Edit | None]] = []
    try:
        for name, edit in edits.items():
            merge = model.get_submodule(flow[name].merge)
            assert isinstance(merge, Merge)
            merges.append((merge, merge.edit))
            merge.edit = edit
        yield model
    finally:
        for merge, previous in reversed(merges):
            merge.edit = previous


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
