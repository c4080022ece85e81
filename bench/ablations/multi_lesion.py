"""multi_lesion (Veit et al. 2016, Fig. 5a): delete k randomly chosen blocks at once, k = 1..K.

S samples per k: distinct k-subsets of the lesionable blocks (min(S, C(n, k)) of them: at k = n there
is one), seeded from (seed, cell seed). Error is expected to rise smoothly with k for a ResNet and to jump to chance for a plain net.
k = 0 (nothing deleted) is evaluated through the same path and recorded once: it must equal the
intact model, which anchors the curve and checks the sweep machinery.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
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
from bench.flow import DropBranch, IdentityFlow
from bench.metrics import mean_of


class MultiLesionParams(TestTimeParams):
    max_k: int | None = Field(None, ge=1, le=1_000, description="Largest k; default min(20, n). Above n (this architecture's lesionable blocks) it is capped at n, so one value serves nets of several depths; the k used is the summary's max_k.")
    samples: int = Field(10, ge=1, le=10_000, description="Random block sets per k.")
    seed: int = Field(0, description="Sampling seed, combined with the cell's seed.")


class MultiLesionSummary(DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    error_by_k: dict[str, float] = Field(description="Mean error over the samples of each k (k = 0: intact).")
    error_std_by_k: dict[str, float] = Field(description="Sd of the error over the samples of each k.")
    max_k: int


def distinct_subsets(n: int, k: int, count: int, rng: np.random.Generator) -> list[list[int]]:
    """min(count, C(n, k)) distinct sorted k-subsets of range(n), drawn uniformly without replacement."""
    total = math.comb(n, k)
    if count >= total:  # every subset: enumerate rather than hope the sampler finds them all
        import itertools

        return [list(c) for c in itertools.combinations(range(n), k)]
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < count:
        seen.setdefault(tuple(sorted(rng.choice(n, size=k, replace=False).tolist())), None)
    return [list(c) for c in seen]


class MultiLesionKey(Key):
    k: int = Field(description="How many blocks are removed at once.")
    sample: int = Field(description="Which random k-subset (distinct within k).")
    blocks: list[str] = Field(description="The blocks removed.")


MultiLesionRecord = record_of(MultiLesionKey)  # what ctx.record writes, with this key


class MultiLesion(TestTimeAblation):
    """Veit multi-block lesion: delete k random blocks at test time, k = 1..K, S distinct samples per k."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "branch"
    Params: ClassVar = MultiLesionParams
    Summary: ClassVar = MultiLesionSummary
    Record: ClassVar = MultiLesionRecord

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
            for s, chosen in enumerate(distinct_subsets(len(blocks), k, self.params.samples, rng)):
                sets.append((k, s, [blocks[i] for i in chosen]))
        return sets

    def run(self, ctx: AblationContext) -> AblationResult:
        sets = [(0, 0, []), *self.sample_sets(ctx.flow, ctx.seed)]
        outcomes = ctx.evaluate_many([{b: DropBranch() for b in names} for _, _, names in sets])
        records, boots = [], []
        for (k, s, names), outcome in zip(sets, outcomes):
            records.append(ctx.record({"k": k, "sample": s, "blocks": names}, outcome))
            if k:
                boots.append(ctx.dependence_boot(outcome))
        by_k: dict[int, list[float]] = {}
        for r in records:
            by_k.setdefault(r["key"]["k"], []).append(1 - r["primary"])
        summary = MultiLesionSummary(
            dependence=mean_of(r["dependence"] for r in records if r["key"]["k"]),
            error_by_k={str(k): round(float(np.mean(v)), 6) for k, v in by_k.items()},
            error_std_by_k={str(k): round(float(np.std(v)), 6) for k, v in by_k.items()},
            max_k=max(by_k))
        return AblationResult(records, summary, mean_boot(boots))
