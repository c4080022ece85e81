"""Test-time sweeps at the cost of the work they must do.

A lesion of block i changes nothing before block i. For models with a sequential trunk
(``model.trunk``: nn.Sequential whose children include the blocks, ``model.head(features, size)``),
each batch is pushed through the trunk ONCE; at every position p, the edit sets whose first edited
block is p are finished from the activation cached there (only their suffix is computed), then the
shared activation moves on. Memory stays at one cached activation per batch. Outcomes are
bit-identical to evaluating each edited model from scratch (same operations, same order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from bench.data import Split, TaskInfo
from bench.evaluate import autocast, eval_batches, in_split_order
from bench.flow import Edit, IdentityFlow, Merge, set_edits
from bench.metrics import Outcome, logits_stats


def shared_prefix_plan(model: nn.Module, flow: IdentityFlow, edit_sets: list[Mapping[str, Edit]]):
    """{first edited trunk position: [set indices]}, or None when the model has no sequential trunk."""
    trunk, head = getattr(model, "trunk", None), getattr(model, "head", None)
    if not isinstance(trunk, nn.Sequential) or head is None:
        return None
    position = {f"trunk.{i}": i for i in range(len(trunk))}
    plan: dict[int, list[int]] = defaultdict(list)
    for j, edits in enumerate(edit_sets):
        if any(name not in position for name in edits):
            return None
        plan[min((position[n] for n in edits), default=len(trunk))].append(j)
    return plan


@torch.no_grad()
def evaluate_shared(model: nn.Module, flow: IdentityFlow, edit_sets: list[Mapping[str, Edit]], split: Split,
                    info: TaskInfo, *, batch_size: int, device: torch.device, amp: str = "off",
                    order: torch.Tensor | None = None) -> list[Outcome] | None:
    plan = shared_prefix_plan(model, flow, edit_sets)
    if plan is None:
        return None
    trunk, head = model.trunk, model.head
    merges = [[(model.get_submodule(flow[n].merge), e) for n, e in edits.items()] for edits in edit_sets]
    chunks: list[list[torch.Tensor]] = [[] for _ in edit_sets]
    last = max(plan, default=0)  # no set starts later: the rest of the shared pass is not needed
    model.eval()
    for x, y in eval_batches(split, batch_size, order):
        x = x.to(device, non_blocking=True)
        size = x.shape[-2:]
        with autocast(device, amp):
            h = x
            for p in range(last + 1):
                for j in plan.get(p, ()):
                    chunks[j].append(_finish(trunk, head, h, p, size, merges[j], y, info))
                if p < last:
                    h = trunk[p](h)
    return [Outcome(in_split_order(torch.cat(c).numpy().astype(np.float64), order), info) for c in chunks]


def _finish(trunk, head, h, start, size, merges: list[tuple[Merge, Edit]], y, info) -> torch.Tensor:
    previous = set_edits(merges)
    try:
        for module in trunk[start:]:
            h = module(h)
        logits = head(h, size)
    finally:
        set_edits(previous)
    return logits_stats(logits, y, info)
