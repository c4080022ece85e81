"""skip_removal (train time): train without the identity paths and compare under the same recipe/seeds.

ResNet -> its plain twin (every residual identity, projections included, replaced by zeros: y = F(x));
U-Net -> no long skips (the skip tensor replaced by zeros: the decoder sees only the deep path),
all levels at once and, with ``per_level``, one level at a time.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from bench.ablations.base import AblationParams, TrainTimeAblation
from bench.flow import Edit, FillIdentity, IdentityFlow


class SkipRemovalParams(AblationParams):
    per_level: bool = Field(False, description="Also train one variant per skip level / stage.")


class SkipRemoval(TrainTimeAblation):
    """Train without identity paths: ResNet -> plain twin, U-Net -> no long skips (all or per level)."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "identity"
    Params: ClassVar = SkipRemovalParams

    @staticmethod
    def _paths(flow: IdentityFlow):
        return [p for p in flow.points if p.has_identity]

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self._paths(flow) else "no identity paths to remove (already plain)"

    def variants(self, flow: IdentityFlow) -> dict[str, dict[str, Edit]]:
        paths = self._paths(flow)
        out = {"no_identity": {p.name: FillIdentity("zero") for p in paths}}
        if self.params.per_level:
            for level in sorted({p.stage for p in paths}):
                out[f"no_identity_level{level}"] = {p.name: FillIdentity("zero") for p in paths if p.stage == level}
        return out
