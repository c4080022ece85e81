"""reorder (Veit et al. 2016, Fig. 5b): exchange random pairs of shape-compatible blocks within a stage.

For each number of swaps, S random reorderings are evaluated — distinct permutations across the whole
sweep, never the original order (swapping a pair back undoes it: such draws are redrawn; a small net
may have fewer distinct orders than asked, and then gets all it has). Each records Kendall's tau
between the original and the new block order, tau = 1 − 4·d / (n(n−1)), d = discordant pairs. Error is
expected to rise smoothly as tau falls for a ResNet; the correlation of tau and error is reported only
from at least 3 distinct tau values.

Blocks declared in one ``BlockGroup`` (a transformer block's attention and MLP branches) move as one
unit: the group is exchanged with another group of the same stage, and tau is over the units' order.
An architecture that declares no group is reordered exactly as before (the same draws and records).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

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
from bench.flow import IdentityFlow, reordered
from bench.metrics import mean_of


def kendall_tau(order: list[int]) -> float:
    """Kendall's tau between 0..n-1 and ``order`` (a permutation), via the count of discordant pairs."""
    n = len(order)
    if n < 2:
        return 1.0
    d = sum(order[i] > order[j] for i in range(n) for j in range(i + 1, n))
    return 1.0 - 4.0 * d / (n * (n - 1))


def slots(flow: IdentityFlow) -> list[int]:
    """Indices (into flow.blocks) of the blocks that stand for a place in the order: every block, except
    that a declared unit is one place, stood for by its first block."""
    seen: set[str] = set()
    out = []
    for i, b in enumerate(flow.blocks):
        if not b.unit or b.unit not in seen:
            seen.add(b.unit)
            out.append(i)
    return out


MIN_TAUS = 3  # distinct tau values below which a correlation says nothing
MAX_DRAWS = 200  # redraws per wanted permutation before concluding the net has no more distinct orders


class ReorderSummary(DependenceSummary):
    model_config = ConfigDict(extra="forbid")
    corr_tau_error: float | None = Field(description="Pearson r of Kendall tau and error; None below 3 distinct taus.")
    corr_note: str | None = Field(None, description="Why the correlation is missing, when it is.")
    distinct_taus: int
    reorderings: int
    min_tau: float
    max_error: float


class ReorderParams(TestTimeParams):
    swaps: list[Annotated[int, Field(ge=1, le=10_000)]] = Field([1, 2, 4, 8, 16], min_length=1, max_length=100, description="Numbers of random compatible-pair swaps.")
    samples: int = Field(5, ge=1, le=10_000, description="Random reorderings per number of swaps.")
    seed: int = 0


class ReorderKey(Key):
    swaps: int = Field(description="Random transpositions applied within stages.")
    sample: int = Field(description="Which permutation (distinct, never the original order).")
    kendall_tau: float = Field(description="Rank correlation of the new order with the original.")
    moved: list[str] = Field(description="The blocks that changed place.")


ReorderRecord = record_of(ReorderKey)  # what ctx.record writes, with this key


class Reorder(TestTimeAblation):
    """Veit reordering: swap random pairs of shape-compatible blocks within a stage; error vs Kendall tau."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "branch"  # it takes away each residual branch's place in the order; identities stay
    Params: ClassVar = ReorderParams
    Summary: ClassVar = ReorderSummary
    Record: ClassVar = ReorderRecord

    @staticmethod
    def groups(flow: IdentityFlow) -> list[list[int]]:
        """Indices (into flow.blocks) of exchangeable blocks: residual blocks of one stage whose input and
        output shapes match and whose shortcut is the identity (Veit et al.). Plain layers are left out:
        the protocol is about the ensemble view of residual blocks. A declared unit (``unit``: its
        BlockGroup) is listed by its first block and exchangeable when all its blocks are, in one stage."""
        by_stage: dict[int, list[int]] = {}
        for i in slots(flow):
            b = flow.blocks[i]
            members = [p for p in flow.blocks if p.unit == b.unit] if b.unit else [b]
            if all(p.same_shape and p.has_identity and p.shortcut == "identity" and p.stage == b.stage
                   for p in members):
                by_stage.setdefault(b.stage, []).append(i)
        return [g for g in by_stage.values() if len(g) >= 2]

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None if self.groups(flow) else "no stage with two exchangeable residual blocks (identity shortcut)"

    def permutations(self, flow: IdentityFlow, cell_seed: int) -> list[tuple[int, int, list[int]]]:
        groups = self.groups(flow)
        pairs = [(a, b) for g in groups for i, a in enumerate(g) for b in g[i + 1:]]
        rng = np.random.default_rng([self.params.seed, cell_seed])
        identity = list(range(len(flow.blocks)))
        seen = {tuple(identity)}
        out = []
        for swaps in self.params.swaps:
            for s in range(self.params.samples):
                for _ in range(MAX_DRAWS):
                    order = list(identity)
                    for _ in range(swaps):
                        a, b = pairs[rng.integers(len(pairs))]
                        order[a], order[b] = order[b], order[a]
                    if tuple(order) not in seen:
                        seen.add(tuple(order))
                        out.append((swaps, s, order))
                        break
        return out

    def run(self, ctx: AblationContext) -> AblationResult:
        names = [b.unit or b.name for b in ctx.flow.blocks]  # what moves: the block, or its whole unit
        units = slots(ctx.flow)
        records, boots = [], []
        for swaps, s, order in self.permutations(ctx.flow, ctx.seed):
            mapping = {names[i]: names[j] for i, j in enumerate(order) if i != j}
            with reordered(ctx.model, mapping):
                outcome = ctx.evaluate()
            tau = kendall_tau([units.index(order[i]) for i in units])
            records.append(ctx.record({"swaps": swaps, "sample": s, "kendall_tau": round(tau, 6),
                                       "moved": sorted(mapping)}, outcome))
            boots.append(ctx.dependence_boot(outcome))
        taus = np.array([r["key"]["kendall_tau"] for r in records])
        errs = np.array([1 - r["primary"] for r in records])
        distinct = len(np.unique(taus))
        corr, note = None, None
        if distinct < MIN_TAUS:
            note = f"only {distinct} distinct tau value(s); a correlation needs {MIN_TAUS}"
        elif errs.std() == 0:
            note = "every reordering gave the same error"
        else:
            corr = float(np.corrcoef(taus, errs)[0, 1])
        summary = ReorderSummary(dependence=mean_of(r["dependence"] for r in records), corr_tau_error=corr,
                                 corr_note=note, distinct_taus=distinct, reorderings=len(records),
                                 min_tau=float(taus.min()), max_error=float(errs.max()))
        return AblationResult(records, summary, mean_boot(boots))
