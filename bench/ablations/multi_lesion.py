"""multi_lesion (Veit et al. 2016, Fig. 5a): delete k randomly chosen blocks at once, k = 1..K.

S samples per k, drawn without replacement among the lesionable blocks, seeded from (seed, cell
seed). Error is expected to rise smoothly with k for a ResNet and to jump to chance for a plain net.
k = 0 (nothing deleted) is evaluated through the same path and recorded once: it must equal the
intact model, which anchors the curve and checks the sweep machinery.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from bench.ablations.base import (
    Ablation,
    AblationContext,
    AblationResult,
    TestTimeParams,
    by_task,
    mean_boot,
    mean_error,
    pair_groups,
)
from bench.flow import Edit, IdentityFlow
from bench.metrics import mean_of


class MultiLesionParams(TestTimeParams):
    max_k: int | None = Field(None, ge=1, le=1_000, description="Largest k; default min(20, number of lesionable blocks).")
    samples: int = Field(10, ge=1, le=10_000, description="Random block sets per k.")
    seed: int = Field(0, description="Sampling seed, combined with the cell's seed.")


class MultiLesion(Ablation):
    """Veit multi-block lesion: delete k random blocks at test time, k = 1..K, S samples per k."""

    phase: ClassVar = "test"
    Params: ClassVar = MultiLesionParams

    @staticmethod
    def _blocks(flow: IdentityFlow) -> list[str]:
        return [b.name for b in flow.blocks if b.lesionable]

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if len(self._blocks(flow)) >= 1 else "no lesionable blocks"

    def sample_sets(self, flow: IdentityFlow, cell_seed: int) -> list[tuple[int, int, list[str]]]:
        blocks = self._blocks(flow)
        max_k = min(self.params.max_k or 20, len(blocks))
        rng = np.random.default_rng([self.params.seed, cell_seed])
        sets = []
        for k in range(1, max_k + 1):
            for s in range(self.params.samples):
                chosen = sorted(rng.choice(len(blocks), size=k, replace=False).tolist())
                sets.append((k, s, [blocks[i] for i in chosen]))
        return sets

    def run(self, ctx: AblationContext) -> AblationResult:
        sets = [(0, 0, []), *self.sample_sets(ctx.flow, ctx.seed)]
        outcomes = ctx.evaluate_many([{b: Edit(drop_branch=True) for b in names} for _, _, names in sets])
        records, boots = [], []
        for (k, s, names), outcome in zip(sets, outcomes):
            records.append(ctx.record({"k": k, "sample": s, "blocks": names}, outcome))
            if k:
                boots.append(ctx.dependence_boot(outcome))
        by_k: dict[int, list[float]] = {}
        for r in records:
            by_k.setdefault(r["key"]["k"], []).append(1 - r["primary"])
        summary = {
            "dependence": mean_of(r["dependence"] for r in records if r["key"]["k"]),
            "error_by_k": {str(k): round(float(np.mean(v)), 6) for k, v in by_k.items()},
            "error_std_by_k": {str(k): round(float(np.std(v)), 6) for k, v in by_k.items()},
            "max_k": max(by_k),
        }
        return AblationResult(records, summary, mean_boot(boots))

    @classmethod
    def section(cls, res, run_dir) -> str:
        from bench import plots
        from bench.report import fmt, table

        groups = pair_groups(res, "multi_lesion")
        if not groups:
            return ""
        panels = by_task(groups)
        fig, axes = plots.grid(len(panels))
        rows = []
        for ax, (task, archs) in zip(axes, panels):
            for arch, group in archs:
                ks = sorted(int(k) for k in group[0].ablations["multi_lesion"].summary["error_by_k"] if k != "0")
                err = np.array([[c.ablations["multi_lesion"].summary["error_by_k"][str(k)] for k in ks] for c in group])
                sd = np.array([[c.ablations["multi_lesion"].summary["error_std_by_k"][str(k)] for k in ks] for c in group])
                base = mean_error(group)
                mean, spread = err.mean(0), sd.mean(0)
                line, = ax.plot([0, *ks], [base, *mean], marker="o", ms=3, label=arch)
                ax.fill_between(ks, mean - spread, mean + spread, alpha=0.2, color=line.get_color())
                ax.axhline(base, color=line.get_color(), ls="--", lw=0.8)  # intact
                rows.append([task, arch, len(group), fmt(base), *(fmt(float(mean[ks.index(k)])) if k in ks else "—"
                                                              for k in (1, 2, ks[-1]))])
            chance = mean_error([c for _, group in archs for c in group], "chance")
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("blocks deleted (k)", fontsize=8)
            ax.set_ylabel("error (mean ± sd over samples; dashed: intact)", fontsize=8)
            ax.legend(fontsize=7)
        png = plots.save(fig, run_dir / "multi_lesion.png")
        policy = groups[0][2][0].ablations["multi_lesion"].settings.get("bn_policy", "running")
        return ("## multi_lesion — deleting k blocks (Veit et al. 2016, Fig. 5a)\n\n"
                "k lesionable blocks chosen at random and deleted together (residual branch removed, shortcut "
                f"kept); mean ± sd over the samples of each k. BatchNorm statistics: {policy}.\n\n"
                f"![multi lesion]({png})\n\n" + table(["task", "architecture", "seeds", "error k=0", "k=1", "k=2",
                                                       "k=max"], rows) + "\n")
