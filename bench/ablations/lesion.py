"""block_lesion (Veit et al. 2016, Fig. 3): delete one block's residual branch at test time, keep its
shortcut (y = shortcut(x)); sweep every block. Plain nets: delete a shape-preserving layer (y = x).
Blocks whose shortcut is a projection/downsampling are included and marked.

Where the identity flow declares branch kinds (a ViT's ``attention`` and ``mlp``: ``branch_kind``) the
summary also gives the mean D per kind; where it declares units (``BlockGroup``: a transformer block),
every unit is also lesioned whole, all its branches at once (y = x over the block), one record each with
the members' kinds joined (``attention+mlp``) and that mean beside the per-kind ones. The headline
numbers (``dependence``, ``max_dependence``, ``blocks``) stay over single-branch lesions, and an
architecture that declares neither gets exactly the records and summary it got before.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from bench.ablations.base import (
    AblationContext,
    AblationResult,
    DependenceSummary,
    Key,
    TestTimeAblation,
    TestTimeParams,
    mean_boot,
    record_of,
)
from bench.flow import DropBranch, IdentityFlow
from bench.metrics import mean_of


class BlockLesionParams(TestTimeParams):
    blocks: Literal["all"] | list[str] = Field("all", description="Block names to lesion, or all lesionable.")


class _OmitUndeclared(BaseModel):
    """Leaves the ``optional`` fields out of the dump when they are None: an architecture that declares no
    branch kinds writes the records and summary it wrote before they existed."""

    optional: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit(self, handler: SerializerFunctionWrapHandler) -> dict:
        out = handler(self)
        for name in self.optional:
            if out.get(name) is None:
                out.pop(name, None)
        return out


class BlockLesionSummary(_OmitUndeclared, DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    optional: ClassVar = ("dependence_by_branch",)
    dependence_non_downsampling: float | None = Field(description="Mean D over blocks whose shape is kept.")
    max_dependence: float | None = Field(description="The worst single lesion's D.")
    blocks: int = Field(description="Blocks lesioned.")
    dependence_by_branch: dict[str, float | None] | None = Field(None, description=(
        "Mean D per declared branch kind (attention, mlp) and of whole-unit lesions (attention+mlp); absent "
        "when the architecture declares no kinds."))


class BlockLesionKey(_OmitUndeclared, Key):
    optional: ClassVar = ("branch",)
    block: str = Field(description="The residual block whose branch is removed (or the unit lesioned whole).")
    stage: int = Field(description="Its stage (resolution level).")
    downsampling: bool = Field(description="The block changes shape (its shortcut is a projection).")
    shortcut: str = Field(description="What the block's shortcut is (identity, projection, ...).")
    branch: str | None = Field(None, description=(
        "The branch's declared kind; a unit lesioned whole: its members' kinds joined by '+'. Absent when undeclared."))


BlockLesionRecord = record_of(BlockLesionKey)  # what ctx.record writes, with this key


class BlockLesion(TestTimeAblation):
    """Veit single-block lesion: remove each residual branch (or plain layer) at test time, keep the shortcut."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "branch"
    Params: ClassVar = BlockLesionParams
    Summary: ClassVar = BlockLesionSummary
    Record: ClassVar = BlockLesionRecord

    def targets(self, flow: IdentityFlow) -> list[str]:
        if self.params.blocks == "all":
            return [b.name for b in flow.blocks if b.lesionable]
        return list(self.params.blocks)

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self.targets(flow) else "no lesionable blocks (no residual block or shape-preserving layer)"

    def validate(self, flow: IdentityFlow) -> None:
        names = {b.name: b for b in flow.blocks}
        for name in self.targets(flow):
            if name not in names:
                raise ValueError(f"no block named {name!r}; blocks are {', '.join(names) or 'none'}")
            if not names[name].lesionable:
                raise ValueError(f"block {name!r} changes shape and has no shortcut, so it cannot be lesioned")

    def units(self, flow: IdentityFlow) -> dict[str, list[str]]:
        """{unit: its lesionable blocks} for the declared units (BlockGroup) of the blocks lesioned (all)."""
        if self.params.blocks != "all":
            return {}
        out: dict[str, list[str]] = {}
        for b in flow.blocks:
            if b.unit and b.lesionable:
                out.setdefault(b.unit, []).append(b.name)
        return out

    def run(self, ctx: AblationContext) -> AblationResult:
        records, boots = [], []
        names = self.targets(ctx.flow)
        units = self.units(ctx.flow)
        outcomes = ctx.evaluate_many([{name: DropBranch()} for name in names]
                                     + [dict.fromkeys(members, DropBranch()) for members in units.values()])
        kinds = bool(units) or any(ctx.flow[name].branch for name in names)
        for name, outcome in zip(names, outcomes):
            point = ctx.flow[name]
            key = {"block": name, "stage": point.stage, "downsampling": not point.same_shape, "shortcut": point.shortcut}
            records.append(ctx.record({**key, "branch": point.branch} if kinds else key, outcome))
            boots.append(ctx.dependence_boot(outcome))
        singles = list(records)
        for (unit, members), outcome in zip(units.items(), outcomes[len(names):]):
            points = [ctx.flow[m] for m in members]
            records.append(ctx.record({"block": unit, "stage": points[0].stage, "downsampling": False,
                                       "shortcut": "identity", "branch": "+".join(p.branch or "branch" for p in points)}, outcome))
        deps = [r["dependence"] for r in singles if r["dependence"] is not None]
        plain = [r["dependence"] for r in singles if not r["key"]["downsampling"] and r["dependence"] is not None]
        by_branch = None
        if kinds or units:
            by_branch = {}
            for r in records:
                by_branch.setdefault(r["key"]["branch"] or "undeclared", []).append(r["dependence"])
            by_branch = {k: mean_of(v) for k, v in by_branch.items()}
        summary = BlockLesionSummary(dependence=mean_of(deps), dependence_non_downsampling=mean_of(plain),
                                     max_dependence=float(np.max(deps)) if deps else None, blocks=len(singles),
                                     dependence_by_branch=by_branch)
        return AblationResult(records, summary, mean_boot(boots))
