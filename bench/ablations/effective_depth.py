"""effective_depth_training (Veit et al. 2016, Sec. 5; train time): train on short paths only.

In every training batch exactly m of the n residual blocks keep their branch, drawn uniformly; the
others pass their shortcut alone, so each batch trains paths of length m. Veit et al. kept 23 of 54
(ResNet-110: 5.96% error vs 6.10% for normal training). At test time the full network runs, with no
rescaling (the paper does not say; stochastic depth, by contrast, scales each branch by its survival
rate). The variant is compared with the baseline under the same recipe and seeds like skip_removal.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bench.ablations.base import AblationParams, TrainTimeAblation
from bench.flow import Edit, IdentityFlow, KeepExactly, KeepSubset, MergePoint


class EffectiveDepthParams(AblationParams):
    keep: int | None = Field(None, ge=1, le=1_000, description="Blocks kept per training batch (m); default keep_fraction·n.")
    keep_fraction: float = Field(23 / 54, gt=0, le=1, description="m / n when keep is unset (Veit: 23 of 54).")


class EffectiveDepthTraining(TrainTimeAblation):
    """Train with exactly m of n residual branches per batch (Veit Sec. 5); test the full network."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "branch"  # most branches are dropped in each training batch
    Params: ClassVar = EffectiveDepthParams

    @staticmethod
    def blocks(flow: IdentityFlow) -> list[MergePoint]:
        return [b for b in flow.residual_blocks if b.lesionable]

    def kept(self, n: int) -> int:
        return self.params.keep or max(1, round(self.params.keep_fraction * n))

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if len(self.blocks(flow)) >= 2 else "fewer than two residual blocks to sample from"

    def validate(self, flow: IdentityFlow) -> None:
        n = len(self.blocks(flow))
        if self.kept(n) > n:
            raise ValueError(f"keep: {self.params.keep} but the architecture has {n} residual blocks; "
                             f"set keep <= {n}")

    def variants(self, flow: IdentityFlow) -> dict[str, dict[str, Edit]]:
        blocks = self.blocks(flow)
        n, m = len(blocks), self.kept(len(blocks))
        sampler = KeepExactly(n, m)
        return {f"keep_{m}_of_{n}": {b.name: KeepSubset(sampler, i) for i, b in enumerate(blocks)}}
