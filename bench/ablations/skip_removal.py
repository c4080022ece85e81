"""skip_removal (train time): train without the identity paths and compare under the same recipe/seeds.

ResNet -> its plain twin (every residual identity, projections included, replaced by zeros: y = F(x));
U-Net -> no long skips (the skip tensor replaced by zeros: the decoder sees only the deep path),
all levels at once and, with ``per_level``, one level at a time.

``levels`` adds one variant that removes only the listed levels (Wilm et al. 2024: removing only the top
skip did best). Levels are numbered as the identity flow numbers them: a U-Net's 0 is its finest skip,
the top of the U (``top`` names it), 1 the next coarser, -1 an input skip; a ResNet's are its stages.

``match_params`` adds ``no_identity_matched``: the skip-free model widened until the parameters that still
train match the baseline's (Lean U-Net, 2025: a skip-free U-Net is a fair control only with capacity
matched). A zero-filled skip keeps the weights that read it, so the unmatched variant has the baseline's
parameter count but fewer live parameters; which width matches is the plan's to find
(``capacity_matched``, ``bench.plan.matched_sizes``).

The all-levels variant is always declared first: it stays the headline whatever else is asked.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from bench.ablations.base import AblationParams, TrainTimeAblation
from bench.flow import Edit, FillIdentity, IdentityFlow, MergePoint

TOP = 0  # the level ``top`` names: the finest skip of a U-Net, the first stage of a ResNet


class SkipRemovalParams(AblationParams):
    per_level: bool = Field(False, description="Also train one variant per skip level / stage.")
    levels: list[int | Literal["top"]] | None = Field(None, min_length=1, max_length=64, description=(
        "Also train one variant without only these levels (U-Net: 0 = 'top', the finest skip; -1 its input "
        "skip; ResNet: stages)."))
    match_params: bool = Field(False, description=(
        "Also train no_identity_matched: the skip-free model widened to the baseline's live parameter count."))

    @field_validator("levels", mode="before")
    @classmethod
    def _named_levels(cls, levels: object) -> object:
        words = [v for v in levels if isinstance(v, str) and v != "top"] if isinstance(levels, list) else []
        if words:
            raise ValueError(f"{words[0]!r} is not a level; write whole numbers (0 = the finest skip) or 'top'")
        return levels


class SkipRemoval(TrainTimeAblation):
    """Train without identity paths: ResNet -> plain twin, U-Net -> no long skips (all or per level)."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "identity"
    Params: ClassVar = SkipRemovalParams

    @staticmethod
    def _paths(flow: IdentityFlow) -> list[MergePoint]:
        return [p for p in flow.points if p.has_identity]

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self._paths(flow) else "no identity paths to remove (already plain)"

    def listed(self) -> list[int]:
        """The ``levels`` asked for, ``top`` read as level 0, sorted and once each."""
        return sorted({TOP if level == "top" else level for level in self.params.levels or []})

    def validate(self, flow: IdentityFlow) -> None:
        have = sorted({p.stage for p in self._paths(flow)})
        missing = [level for level in self.listed() if level not in have]
        if missing:
            raise ValueError(f"levels {missing} are not levels of this architecture (it has {have}; 0 = 'top', the "
                             "finest); list only those")

    def variants(self, flow: IdentityFlow) -> dict[str, dict[str, Edit]]:
        paths = self._paths(flow)
        out = {"no_identity": {p.name: FillIdentity("zero") for p in paths}}
        if self.params.match_params:
            out["no_identity_matched"] = dict(out["no_identity"])
        if self.params.levels:
            listed = self.listed()
            name = f"no_identity_level{listed[0]}" if len(listed) == 1 else f"no_identity_levels{'_'.join(map(str, listed))}"
            out[name] = {p.name: FillIdentity("zero") for p in paths if p.stage in listed}
        if self.params.per_level:
            for level in sorted({p.stage for p in paths}):
                out[f"no_identity_level{level}"] = {p.name: FillIdentity("zero") for p in paths if p.stage == level}
        return out

    def capacity_matched(self, flow: IdentityFlow) -> dict[str, str]:
        """{variant: the architecture parameter the plan widens to match the baseline's live parameter count}."""
        return {"no_identity_matched": "width"} if self.params.match_params else {}
