"""skip_lesion (test time): replace a trained skip's tensor by a fill, per level and all levels at once.

Fills: ``zero``; ``mean`` — the skip's mean activation over calibration batches of training images
(per channel and position, i.e. the batch dimension averaged out: the skip then carries no
information about *this* image); ``shuffle`` — the skip of another image of the batch (real
statistics, wrong image). The fill is part of each record's key. Works on any skip point (U-Net
concat skips) and, with ``include_blocks``, on residual identity paths too.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from bench.ablations.base import Ablation, AblationContext, AblationResult, TestTimeParams, pair_groups
from bench.flow import Edit, IdentityFlow, MergePoint


class SkipLesionParams(TestTimeParams):
    fills: list[Literal["zero", "mean", "shuffle"]] = Field(["zero", "mean", "shuffle"], min_length=1)
    include_blocks: bool = Field(False, description="Also lesion residual identity paths (grouped by stage).")
    calibration_batches: int = Field(10, ge=1, le=10_000, description="Training batches averaged for fill=mean.")


class SkipLesion(Ablation):
    """Replace trained skip tensors by zero / dataset-mean / batch-shuffled fills, per level and all levels."""

    phase: ClassVar = "test"
    Params: ClassVar = SkipLesionParams

    def points(self, flow: IdentityFlow) -> list[MergePoint]:
        pts = [p for p in flow.skips if p.has_identity]
        if self.params.include_blocks:
            pts += [p for p in flow.blocks if p.has_identity]
        return pts

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self.points(flow) else "no skip connections (set include_blocks: true for residual paths)"

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
        levels: dict[str, list[MergePoint]] = {}
        for p in points:
            levels.setdefault(f"{p.role}{p.stage}" if p.role == "block" else str(p.stage), []).append(p)
        settings = [(fill, level, pts) for fill in self.params.fills
                    for level, pts in [*levels.items(), ("all", points)]]
        edit_sets = [{p.name: Edit(fill=fill, mean=means.get(p.name)) for p in pts} for fill, _, pts in settings]
        records, summary_boot, summary_dep = [], None, None
        headline = "zero" if "zero" in self.params.fills else self.params.fills[0]
        for (fill, level, pts), outcome in zip(settings, ctx.evaluate_many(edit_sets)):
            records.append(ctx.record({"fill": fill, "level": level, "points": [p.name for p in pts]}, outcome))
            if fill == headline and level == "all":
                summary_boot, summary_dep = ctx.dependence_boot(outcome), records[-1]["dependence"]
        summary = {"dependence": summary_dep, "headline": f"fill={headline}, all levels"}
        for fill in self.params.fills:
            rec = next(r for r in records if r["key"]["fill"] == fill and r["key"]["level"] == "all")
            summary[f"dependence_all_{fill}"] = rec["dependence"]
        return AblationResult(records, summary, summary_boot)

    @classmethod
    def section(cls, res, run_dir) -> str:
        from bench import plots
        from bench.report import fmt, mean_of, table

        groups = pair_groups(res, "skip_lesion")
        if not groups:
            return ""
        fig, axes = plots.grid(len(groups))
        rows = []
        for ax, (task, arch, group) in zip(axes, groups):
            recs = group[0].ablations["skip_lesion"].records
            keys = [(r["key"]["fill"], str(r["key"]["level"])) for r in recs]
            dep = np.array([[r["dependence"] if r["dependence"] is not None else np.nan
                             for r in c.ablations["skip_lesion"].records] for c in group])
            means = {k: mean_of(dep[:, i]) for i, k in enumerate(keys)}  # None where every seed was undefined
            fills = sorted({k[0] for k in keys})
            levels = list(dict.fromkeys(k[1] for k in keys))
            width = 0.8 / len(fills)
            for j, fill in enumerate(fills):
                vals = [np.nan if means[fill, lv] is None else means[fill, lv] for lv in levels]
                ax.bar(np.arange(len(levels)) + j * width, vals, width, label=fill)
            ax.set_xticks(np.arange(len(levels)) + width * (len(fills) - 1) / 2, levels, fontsize=7)
            ax.set_title(f"{arch} on {task}", fontsize=9)
            ax.set_xlabel("skip level lesioned", fontsize=8)
            ax.set_ylabel("identity dependence D", fontsize=8)
            ax.legend(fontsize=7)
            for fill in fills:
                per_level = ", ".join(f"{lv}: {fmt(means[fill, lv])}" for lv in levels if lv != "all")
                rows.append([task, arch, len(group), fill, per_level, fmt(means[fill, "all"])])
        png = plots.save(fig, run_dir / "skip_lesion.png")
        return ("## skip_lesion — trained skips replaced at test time\n\n"
                "D per level (0 = finest) and for all levels at once; fills: zero, the calibrated mean activation, "
                "another image's skip (shuffle). The headline D (verdict) is the zero fill at all levels.\n\n"
                f"![skip lesion]({png})\n\n" + table(["task", "architecture", "seeds", "fill", "D per level", "D, all levels"],
                                                     rows) + "\n")
