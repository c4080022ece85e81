"""skip_lesion (test time): replace a trained skip's tensor by a fill, per level and all levels at once.

Fills: ``zero``; ``mean`` — the skip's mean activation over calibration batches of training images
(per channel and position, i.e. the batch dimension averaged out: the skip then carries no
information about *this* image); ``shuffle`` — the skip of another test image (real statistics, wrong
image): the test set is visited in a seeded random order and each image gets the skip of the next one
in its batch, a random derangement of the whole test set (never a neighbour in file order). The fill is
part of each record's key. Works on any skip point (U-Net concat skips) and, with ``include_blocks``,
on residual identity paths too.

The headline D (``headline_fill``, default ``mean``) is the mean fill at all levels: it removes what
the skip says about this image and keeps its first-order statistics, so the decoder is not pushed off
its input distribution. A zero fill also measures how the decoder copes with an input it never saw (a
U-Net under zeros sat exactly on the chance predictor); both are recorded beside it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from pydantic import ConfigDict, Field

from bench.ablations.base import (
    AblationContext,
    AblationResult,
    DependenceSummary,
    Key,
    TestTimeAblation,
    TestTimeParams,
    record_of,
)
from bench.flow import FillIdentity, IdentityFlow, MergePoint

NO_SKIPS = "no skip connections (set include_blocks: true for residual paths)"


def identity_points(flow: IdentityFlow, include_blocks: bool) -> list[MergePoint]:
    """The skips that carry an identity, then (``include_blocks``) the residual identity paths."""
    pts = [p for p in flow.skips if p.has_identity]
    if include_blocks:
        pts += [p for p in flow.blocks if p.has_identity]
    return pts


def by_level(points: list[MergePoint]) -> dict[str, list[MergePoint]]:
    """Points by level (``"0"``, ``"1"``, ... and ``"block2"`` for a residual stage), then ``all`` of them."""
    out: dict[str, list[MergePoint]] = {}
    for p in points:
        out.setdefault(f"{p.role}{p.stage}" if p.role == "block" else str(p.stage), []).append(p)
    return {**out, "all": points}


class SkipLesionSummary(DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    headline: str = Field(description="Which record the summary D is.")
    dependence_all_zero: float | None = None
    dependence_all_mean: float | None = None
    dependence_all_shuffle: float | None = None


class SkipLesionParams(TestTimeParams):
    fills: list[Literal["zero", "mean", "shuffle"]] = Field(["zero", "mean", "shuffle"], min_length=1)
    headline_fill: Literal["zero", "mean", "shuffle"] = Field(
        "mean", description="The fill whose all-levels D is the summary (and the verdict's); must be in fills.")
    seed: int = Field(0, ge=0, description="Seeds the shuffle fill's random derangement, with the cell's seed.")
    include_blocks: bool = Field(False, description="Also lesion residual identity paths (grouped by stage).")
    calibration_batches: int = Field(10, ge=1, le=10_000, description="Training batches averaged for fill=mean.")


class SkipLesionKey(Key):
    fill: str = Field(description="What replaces the skip: mean, zero or shuffle.")
    level: str = Field(description="The skip's level, or 'all' for every skip at once.")
    points: list[str] = Field(description="The merge points filled.")


SkipLesionRecord = record_of(SkipLesionKey)  # what ctx.record writes, with this key


class SkipLesion(TestTimeAblation):
    """Replace trained skip tensors by zero / dataset-mean / batch-shuffled fills, per level and all levels."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "identity"
    Params: ClassVar = SkipLesionParams
    Summary: ClassVar = SkipLesionSummary
    Record: ClassVar = SkipLesionRecord

    def validate(self, flow: IdentityFlow) -> None:
        if self.params.headline_fill not in self.params.fills:
            raise ValueError(f"headline_fill {self.params.headline_fill!r} is not in fills {self.params.fills}; add it")

    def points(self, flow: IdentityFlow) -> list[MergePoint]:
        return identity_points(flow, self.params.include_blocks)

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self.points(flow) else NO_SKIPS

    def calibrate(self, ctx: AblationContext, points: list[MergePoint]) -> dict[str, torch.Tensor]:
        """Mean identity tensor (C, H, W) at each merge over calibration batches, read with forward hooks."""
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        handles = []
        for p in points:
            def hook(module, args, name=p.name):
                ident = args[0].detach().float()
                sums[name] = sums.get(name, 0) + ident.sum(0)
                counts[name] = counts.get(name, 0) + ident.shape[0]
            handles.append(ctx.model.get_submodule(p.merge).register_forward_pre_hook(hook))
        try:
            ctx.model.eval()
            with torch.no_grad():
                for i, (x, _) in enumerate(ctx.task.train.batches(ctx.eval_batch_size, train=False)):
                    if i >= self.params.calibration_batches:
                        break
                    ctx.model(x.to(ctx.device))
        finally:
            for h in handles:
                h.remove()
        return {name: sums[name] / counts[name] for name in sums}

    def run(self, ctx: AblationContext) -> AblationResult:
        points = self.points(ctx.flow)
        means = self.calibrate(ctx, points) if "mean" in self.params.fills else {}
        settings = [(fill, level, pts) for fill in self.params.fills for level, pts in by_level(points).items()]
        edit_sets = [{p.name: FillIdentity(fill, means.get(p.name)) for p in pts} for fill, _, pts in settings]
        n = len(ctx.split)
        batch = ctx.eval_batch_size
        while n % batch == 1 and batch > 2:  # a last batch of one image would get its own skip back
            batch -= 1
        ctx = dataclasses.replace(ctx, eval_batch_size=batch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.params.seed * 1_000_003 + ctx.seed))
        records, summary_boot, summary_dep = [], None, None
        headline = self.params.headline_fill
        for (fill, level, pts), outcome in zip(settings, ctx.evaluate_many(edit_sets, order=order)):
            records.append(ctx.record({"fill": fill, "level": level, "points": [p.name for p in pts]}, outcome))
            if fill == headline and level == "all":
                summary_boot, summary_dep = ctx.dependence_boot(outcome), records[-1]["dependence"]
        all_levels = {f"dependence_all_{r['key']['fill']}": r["dependence"] for r in records if r["key"]["level"] == "all"}
        summary = SkipLesionSummary(dependence=summary_dep, headline=f"fill={headline}, all levels", **all_levels)
        return AblationResult(records, summary, summary_boot)
