"""block_lesion (Veit et al. 2016, Fig. 3): delete one block's residual branch at test time, keep its
shortcut (y = shortcut(x)); sweep every block. Plain nets: delete a shape-preserving layer (y = x).
Blocks whose shortcut is a projection/downsampling are included and marked.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from bench.ablations.base import (
    Ablation,
    AblationContext,
    AblationResult,
    DependenceSummary,
    TestTimeParams,
    mean_boot,
    mean_error,
    pair_groups,
)
from bench.flow import DropBranch, IdentityFlow
from bench.metrics import mean_of


class BlockLesionParams(TestTimeParams):
    blocks: Literal["all"] | list[str] = Field("all", description="Block names to lesion, or all lesionable.")


class BlockLesionSummary(DependenceSummary):
    dependence_non_downsampling: float | None = Field(description="Mean D over blocks whose shape is kept.")
    max_dependence: float | None = Field(description="The worst single lesion's D.")
    blocks: int = Field(description="Blocks lesioned.")


class BlockLesion(Ablation):
    """Veit single-block lesion: remove each residual branch (or plain layer) at test time, keep the shortcut."""

    phase: ClassVar = "test"
    removes: ClassVar = "branch"
    Params: ClassVar = BlockLesionParams
    Summary: ClassVar = BlockLesionSummary

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

    @classmethod
    def section(cls, res, run_dir) -> str:
        from bench import plots
        from bench.report import fmt, fmt_ci, mean_of, table

        groups = pair_groups(res, "block_lesion")
        if not groups:
            return ""
        fig, axes = plots.grid(len(groups))
        rows = []
        for ax, (task, arch, group) in zip(axes, groups):
            recs = group[0].ablations["block_lesion"].records
            names = [r["key"]["block"] for r in recs]
            err = np.array([[1 - r["primary"] for r in c.ablations["block_lesion"].records] for c in group])
            base, chance = mean_error(group), mean_error(group, "chance")
            colours = ["tab:red" if r["key"]["downsampling"] else "tab:blue" for r in recs]
            ax.bar(range(len(names)), err.mean(0), yerr=err.std(0) if len(group) > 1 else None, color=colours)
            ax.axhline(base, color="k", ls="--", lw=1, label="no lesion")
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
            ax.set_title(f"{arch} on {task}", fontsize=9)
            ax.set_xlabel("lesioned block (red: downsampling)", fontsize=8)
            ax.set_ylabel(f"error (1 − {group[0].primary_metric})", fontsize=8)
            ax.legend(fontsize=7)
            summaries = [c.ablations["block_lesion"] for c in group]
            ci = fmt_ci(summaries[0].summary_ci) if len(group) == 1 else fmt(
                mean_of([s.summary["dependence"] for s in summaries]))
            rows.append([task, arch, len(group), len(names), fmt(base), fmt(float(err.mean())), fmt(float(err.max())),
                         ci, fmt(mean_of([s.summary["dependence_non_downsampling"] for s in summaries]))])
        png = plots.save(fig, run_dir / "block_lesion.png")
        return ("## block_lesion — single-block lesions (Veit et al. 2016, Fig. 3)\n\n"
                "Each block's residual branch removed at test time, its shortcut kept (plain layers: y = x). "
                "BatchNorm: running statistics kept, as in the paper.\n\n"
                f"![block lesion]({png})\n\n" + table(
                    ["task", "architecture", "seeds", "blocks", "error, intact", "mean error, one block lesioned",
                     "worst", "mean D [95% CI]", "mean D, non-downsampling"], rows) + "\n")
