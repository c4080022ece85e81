"""block_lesion (Veit et al. 2016, Fig. 3): delete one block's residual branch at test time, keep its
shortcut (y = shortcut(x)); sweep every block. Plain nets: delete a shape-preserving layer (y = x).
Blocks whose shortcut is a projection/downsampling are included and marked.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field

from bench.ablations.base import (
    Ablation,
    AblationContext,
    AblationResult,
    DependenceRecord,
    DependenceSummary,
    Key,
    TestTimeParams,
    grid_section,
    mean_boot,
    mean_error,
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


class BlockLesionRecord(DependenceRecord):
    model_config = ConfigDict(extra="forbid")
    key: BlockLesionKey


class BlockLesion(Ablation):
    """Veit single-block lesion: remove each residual branch (or plain layer) at test time, keep the shortcut."""

    phase: ClassVar = "test"
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

    @classmethod
    def section(cls, res, run_dir) -> str:
        from bench import plots
        from bench.report import fmt, mean_of

        def panel(ax, task: str, arch: str, group: list) -> list[list]:
            recs = group[0].ablations["block_lesion"].records
            err = np.array([[1 - r["primary"] for r in c.ablations["block_lesion"].records] for c in group])
            base, chance = mean_error(group), mean_error(group, "chance")
            colours = ["tab:red" if r["key"]["downsampling"] else "tab:blue" for r in recs]
            x = np.arange(1, len(recs) + 1)
            ax.bar(x, err.mean(0), yerr=err.std(0, ddof=1) if len(group) > 1 else None, color=colours, capsize=2)
            ax.axhline(base, color="k", ls="--", lw=1, label="intact")
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
            plots.fit_ylim(ax, [*(err.mean(0) + err.std(0)), *(err.mean(0) - err.std(0)), base, chance])
            plots.integer_ticks(ax)
            ax.set_title(f"{arch} on {task}", fontsize=9)
            ax.set_xlabel("lesioned block (red: downsampling)", fontsize=8)
            ax.set_ylabel(f"error (1 − {group[0].primary_metric})", fontsize=8)
            plots.legend_outside(ax)
            deps = [c.ablations["block_lesion"].summary for c in group]
            down = np.array([bool(r["key"]["downsampling"]) for r in recs])
            by_kind = [fmt(float(err[:, sel].mean())) if sel.any() else "—" for sel in (down, ~down)]
            return [[task, arch, len(group), len(recs), fmt(base), fmt(float(err.mean())), *by_kind,
                     fmt(float(err.max())), fmt(mean_of([d["dependence"] for d in deps])),
                     fmt(mean_of([d["dependence_non_downsampling"] for d in deps]))]]

        return grid_section(
            res, run_dir, "block_lesion", title="block_lesion — single-block lesions (Veit et al. 2016, Fig. 3)",
            intro="Each block's residual branch removed at test time, its shortcut kept (plain layers: y = x). "
                  "Bars: mean error over seeds, error bars: sd over seeds. BatchNorm: running statistics kept, as "
                  "in the paper. D on balanced accuracy (mean over seeds).",
            header=["task", "architecture", "seeds", "blocks", "error, intact", "mean error, one block lesioned",
                    "mean error, downsampling blocks", "mean error, other blocks", "worst", "mean D", "mean D, non-downsampling"],
            panel=panel, sharey=False)
