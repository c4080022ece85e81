"""An ablation plugin for bench, scaling residual branches: run it with `--plugin my_ablation.py`.

``branch_scale`` multiplies the output of every residual branch by a factor at test time (1 = intact,
0 = every branch lesioned at once, y = shortcut(x)) and keeps the identity paths: how much does the
trained network need its branches at full size? It takes (part of) the branches away, so it declares
``removes = "branch"``; its D lands in the ensemble family of the verdict, beside block_lesion.

A test-time ablation derives from ``TestTimeAblation``, declares what it removes and measures (checked
when the class is defined) and implements ``run(ctx)``. ``ctx.evaluate(edits)`` is the only way it
touches the model: an ``Edit`` from ``bench.flow`` set on merge points, undone on exit.
``ctx.record(key, outcome)`` is one setting's record (metrics and D); ``record_of(Key)`` is its type
with the key typed. ``ctx.dependence_boot(outcome)`` gives D under each bootstrap resample of the test
set: the summary's interval. With no report section of its own it is shown as a table of each cell's
summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
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
from bench.flow import Edit, IdentityFlow
from bench.metrics import mean_of
from bench.registry import ABLATIONS


@dataclass(frozen=True)
class ScaleBranch(Edit):
    """Multiply the branch's output by ``factor``; the identity path is left as is."""

    factor: float

    def branch(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.factor


class BranchScaleParams(TestTimeParams):  # TestTimeParams: bn_policy, bn_batches
    factors: list[Annotated[float, Field(ge=0, le=10)]] = Field(
        [0.0, 0.5], min_length=1, max_length=100, description="What every residual branch is multiplied by.")


class BranchScaleKey(Key):
    factor: float = Field(description="The multiplier of every residual branch.")


BranchScaleRecord = record_of(BranchScaleKey)  # what ctx.record writes, with this key


class BranchScaleSummary(DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    blocks: int = Field(description="Residual branches scaled.")


@ABLATIONS.register("branch_scale")
class BranchScale(TestTimeAblation):
    """Scale every residual branch by each factor at test time (identities kept); D is the mean over factors."""

    removes: ClassVar = "branch"
    measure: ClassVar = "dependence"
    Params: ClassVar = BranchScaleParams
    Summary: ClassVar = BranchScaleSummary
    Record: ClassVar = BranchScaleRecord

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if flow.residual_blocks else "no residual block: no branch beside an identity to scale"

    def run(self, ctx: AblationContext) -> AblationResult:
        blocks = [b.name for b in ctx.flow.residual_blocks]
        records, boots = [], []
        for factor in self.params.factors:
            outcome = ctx.evaluate({name: ScaleBranch(factor) for name in blocks})
            records.append(ctx.record({"factor": factor}, outcome))
            boots.append(ctx.dependence_boot(outcome))
        summary = BranchScaleSummary(dependence=mean_of(r["dependence"] for r in records), blocks=len(blocks))
        return AblationResult(records, summary, mean_boot(boots))
