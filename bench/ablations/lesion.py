"""block_lesion (Veit et al. 2016, Fig. 3): delete one block's residual branch at test time, keep its
shortcut (y = shortcut(x)); sweep every block. Plain nets: delete a shape-preserving layer (y = x).
Blocks whose shortcut is a projection/downsampling are included and marked.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field

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


class BlockLesionSummary(DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    dependence_non_downsampling: float | None = Field(description="Mean D over blocks whose shape is kept.")
    max_dependence: float | None = Field(description="The worst single lesion's D.")
    blocks: int = Field(description="Blocks lesioned.")


class BlockLesionKey(Key):
    block: str = Field(description="The residual block whose branch is removed.")
    stage: int = Field(description="Its stage (resolution level).")
    downsampling: bool = Field(description="The block changes shape (its shortcut is a projection).")
    shortcut: str = Field(description="What the block's shortcut is (identity, projection, ...).")


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

    def run(self, ctx: AblationContext) -> AblationResult:
        records, boots = [], []
        names = self.targets(ctx.flow)
        outcomes = ctx.evaluate_many([{name: DropBranch()} for name in names])
        for name, outcome in zip(names, outcomes):
            point = ctx.flow[name]
            rec = ctx.record({"block": name, "stage": point.stage, "downsampling": not point.same_shape,
                              "shortcut": point.shortcut}, outcome)
            records.append(rec)
            boots.append(ctx.dependence_boot(outcome))
        deps = [r["dependence"] for r in records if r["dependence"] is not None]
        plain = [r["dependence"] for r in records if not r["key"]["downsampling"] and r["dependence"] is not None]
        summary = BlockLesionSummary(dependence=mean_of(deps), dependence_non_downsampling=mean_of(plain),
                                     max_dependence=float(np.max(deps)) if deps else None, blocks=len(records))
        return AblationResult(records, summary, mean_boot(boots))
