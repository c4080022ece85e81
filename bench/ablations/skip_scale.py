"""skip_scale (test time): multiply a trained model's skips by beta in [0, 1], all levels at once and each alone.

skip_lesion asks what is lost when a skip is taken away; FreeU (Si et al. 2024) and Skip-Tuning (Ma et
al. 2024) turn the skips of a trained diffusion U-Net *down* without retraining (FreeU's skip factors 0.9
and 0.2, Skip-Tuning's ~0.83) and improve FID. This ablation draws the curve between the two: D at each beta of a grid, per level and for
all levels, so a model that leans on its skips only near beta = 0 (a cliff) is told apart from one that
loses ground as soon as they weaken (a slope). beta = 0 is skip_lesion's zero fill exactly; beta = 1 is
the intact model.

The summary D is the area under the all-levels curve of D against the removed strength 1 - beta, by the
trapezoid rule over the grid, divided by the grid's span: a curve that is D everywhere has area D, and the
area always lies between the curve's lowest and highest D. Its bootstrap replicates are the same area of
each replicate's curve. Works on any skip point and, with ``include_blocks``, on residual identity paths.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from bench.ablations.base import (
    AblationContext,
    AblationResult,
    DependenceSummary,
    Key,
    TestTimeAblation,
    TestTimeParams,
    record_of,
)
from bench.ablations.skip_lesion import NO_SKIPS, by_level, identity_points
from bench.flow import IdentityFlow, MergePoint, ScaleIdentity


class SkipScaleParams(TestTimeParams):
    betas: list[float] = Field([0.0, 0.25, 0.5, 0.75, 0.83, 1.0], min_length=2, max_length=101, description=(
        "Skip strengths beta in [0, 1] (0: skip zeroed, 1: intact; 0.83 is Skip-Tuning's); at least two, distinct."))
    include_blocks: bool = Field(False, description="Also scale residual identity paths (grouped by stage).")

    @field_validator("betas")
    @classmethod
    def _grid(cls, betas: list[float]) -> list[float]:
        outside = [b for b in betas if not 0 <= b <= 1]
        if outside:
            raise ValueError(f"betas {outside} lie outside [0, 1]; a skip is scaled between 0 (removed) and 1 (intact)")
        if len(set(betas)) != len(betas):
            raise ValueError(f"betas {betas} repeat a value; list each strength once")
        return betas


class SkipScaleSummary(DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    betas: list[float] = Field(description="The grid, in the order the records list it.")
    curve: list[float | None] = Field(description="D at each beta of the grid, all levels at once.")
    dependence_by_level: dict[str, float | None] = Field(description="The same area for each level alone.")


class SkipScaleKey(Key):
    beta: float = Field(description="The factor the skips were multiplied by (1: intact).")
    level: str = Field(description="The skip's level, or 'all' for every skip at once.")
    points: list[str] = Field(description="The merge points scaled.")


SkipScaleRecord = record_of(SkipScaleKey)  # what ctx.record writes, with this key


def area(betas: list[float], values: np.ndarray) -> np.ndarray:
    """The trapezoid area under ``values`` (one row per beta, as listed) against 1 - beta, over the grid's
    span: a weighted mean of the rows whose weights are fixed by the grid, so points and replicates are
    combined alike. A None / nan at any beta makes the area nan."""
    x = 1 - np.asarray(betas, dtype=float)
    order = np.argsort(x)
    xs, gaps = x[order], np.diff(x[order])
    w = np.zeros(len(xs))
    w[:-1] += gaps / 2
    w[1:] += gaps / 2
    weights = np.empty_like(w)
    weights[order] = w / (xs[-1] - xs[0])
    v = np.asarray(values, dtype=float)
    return np.tensordot(weights, v, axes=1)


class SkipScale(TestTimeAblation):
    """Multiply trained skips by beta over a grid in [0, 1], per level and all levels; D is the curve's area."""

    removes: ClassVar = "identity"
    Params: ClassVar = SkipScaleParams
    Summary: ClassVar = SkipScaleSummary
    Record: ClassVar = SkipScaleRecord

    def points(self, flow: IdentityFlow) -> list[MergePoint]:
        return identity_points(flow, self.params.include_blocks)

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self.points(flow) else NO_SKIPS

    def settings(self, flow: IdentityFlow) -> list[tuple[str, float, list[MergePoint]]]:
        """(level, beta, points) for every level (then all levels) and every beta of the grid."""
        return [(level, beta, pts) for level, pts in by_level(self.points(flow)).items() for beta in self.params.betas]

    def run(self, ctx: AblationContext) -> AblationResult:
        settings = self.settings(ctx.flow)
        edit_sets = [{p.name: ScaleIdentity(beta) for p in pts} for _, beta, pts in settings]
        records, curves, boots = [], {}, []
        for (level, beta, pts), outcome in zip(settings, ctx.evaluate_many(edit_sets)):
            records.append(ctx.record({"beta": beta, "level": level, "points": [p.name for p in pts]}, outcome))
            d = records[-1]["dependence"]
            curves.setdefault(level, []).append(np.nan if d is None else d)
            if level == "all":
                boots.append(ctx.dependence_boot(outcome))
        betas = self.params.betas
        by_level = {level: _finite(area(betas, np.array(curve))) for level, curve in curves.items()}
        summary = SkipScaleSummary(dependence=by_level.pop("all"), betas=betas, curve=[_finite(d) for d in curves["all"]],
                                   dependence_by_level=by_level)
        return AblationResult(records, summary, area(betas, np.stack(boots)))


def _finite(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)
