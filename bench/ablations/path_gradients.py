"""path_gradients (Veit et al. 2016, Fig. 6): how much gradient flows through paths of each length.

A batch is forwarded normally (BatchNorm in eval mode). In the backward pass each EXAMPLE gets its own
sampled path: for k randomly chosen residual blocks the gradient passes only through the branch, for
the other n − k only through the shortcut (per-example 0/1 gates on the merge inputs,
``GateGradient(1 − m, m)``; the forward pass is unchanged). Every route from input to output crosses
every block, so each gate setting is exactly one of the 2^n paths and, the gradient being multilinear
in the gates, the gated gradients over all 2^n settings sum to the ungated gradient
(tests/ablations/test_path_gradients_all_paths.py checks it for every built-in architecture). Long skips (U-Nets) run in
PARALLEL with the blocks they bypass: a route through a skip crosses none of them, so gate settings and
paths no longer correspond, the binomial path count does not hold, and gradient through an ungated
skip would leak into every sample. Such architectures are declared not applicable, with that reason.
Because examples are independent in eval mode, one backward pass yields a whole batch of samples. We
record the norm of the gradient of the example's loss at the input of the first residual block (where
all paths start).

Reported per k: mean and sd of the gradient norm; the share of paths of length k, C(n,k)/2^n; and
their product, the total gradient carried by paths of length k. The effective-path window is the
central interval of lengths that carries ``window`` (default 90%) of that total, cutting (1 − window)/2
from each tail (Veit: 5–17 of 54). With ``k_step`` > 1 (or sparse ``ks``) the magnitude between
sampled lengths is interpolated log-linearly (it decays exponentially in k), and the total gradient
and window are taken over the sampled range [min ks, max ks] only: nothing is extrapolated.

Every k sees the same (unshuffled, unaugmented) training examples, so the curve compares path
lengths on common inputs; only the sampled paths differ.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from bench.ablations.base import (
    AblationContext,
    AblationParams,
    AblationResult,
    Key,
    Record,
    Summary,
    TestTimeAblation,
)
from bench.flow import GateGradient, IdentityFlow, MergePoint, edited


def path_length_distribution(n: int) -> list[float]:
    """Share of the 2^n paths through n residual blocks that have length k (exact binomial)."""
    return [math.comb(n, k) / 2**n for k in range(n + 1)]


def path_fraction(n: int, low: int, high: int) -> float:
    """Exact share of paths with length in [low, high]."""
    return sum(math.comb(n, k) for k in range(low, high + 1)) / 2**n


def central_window(weights: np.ndarray, mass: float) -> tuple[int, int]:
    """Equal-tail central interval [lo, hi]: at most (1 - mass)/2 of the weight lies on either side."""
    cdf = np.cumsum(weights) / weights.sum()
    tail = (1 - mass) / 2
    lo = int(np.searchsorted(cdf, tail, side="right"))
    hi = int(np.searchsorted(cdf, 1 - tail, side="left"))
    return lo, min(hi, len(weights) - 1)


def total_gradient(n: int, ks: list[int], magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths ks[0]..ks[-1] and each one's share of the total gradient, C(n,k)/2^n x magnitude(k)
    normalised to sum 1; magnitudes between sampled ks are interpolated log-linearly."""
    lengths = np.arange(ks[0], ks[-1] + 1)
    log_mag = np.interp(lengths, ks, np.log(np.maximum(magnitude, np.finfo(float).tiny)))
    total = np.array(path_length_distribution(n))[lengths] * np.exp(log_mag)
    return lengths, total / total.sum()


class PathGradientParams(AblationParams):
    ks: list[int] | None = Field(None, max_length=1_001, description="Path lengths to sample; default 0..n every k_step (and n).")
    k_step: int = Field(1, ge=1, le=1_000, description="Stride of the default ks (the rest are interpolated).")
    samples_per_k: int = Field(1000, ge=1, le=1_000_000, description="Sampled paths per length (Veit: 1,000).")
    batch_size: int = Field(128, ge=1, le=65_536, description="Examples per backward pass = samples per pass.")
    window: float = Field(0.9, gt=0, lt=1, description="Share of the total gradient the effective window holds.")
    seed: int = 0


class PathGradientSummary(Summary):
    n_blocks: int = Field(description="Residual blocks n on every path.")
    window_low: int
    window_high: int
    window_mass: float
    window_path_share: float
    mean_gradient_path_length: float
    mean_path_length: float


def path_edges(flow: IdentityFlow) -> list[MergePoint]:
    """The residual blocks every path crosses (branch or shortcut), in forward order."""
    return [p for p in flow.blocks if p.has_identity and p.shortcut != "none"]


def parallel_skips(flow: IdentityFlow) -> list[MergePoint]:
    """Long skips: identity paths that bypass blocks instead of crossing them (module docstring)."""
    return [p for p in flow.skips if p.has_identity]


def sample_masks(n: int, k: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """(n, batch) 0/1 masks: each column marks a uniformly random k-subset of the n blocks."""
    ranks = torch.rand(n, batch, generator=generator).argsort(0)  # a random permutation per column
    return (ranks < k).float()


def sampled_input_gradients(model: torch.nn.Module, flow: IdentityFlow, x: torch.Tensor, y: torch.Tensor,
                            masks: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Per-example gradient norms where all paths start, for per-example paths."""
    return input_gradients(model, flow, x, y, masks, ignore_index).flatten(1).norm(dim=1)


def input_gradients(model: torch.nn.Module, flow: IdentityFlow, x: torch.Tensor, y: torch.Tensor,
                    masks: torch.Tensor | None, ignore_index: int | None) -> torch.Tensor:
    """Gradient of each example's loss at the first residual block's input, along its own path.

    ``masks`` is (n_blocks, B) 0/1 over ``path_edges(flow)``: 1 = the gradient goes through that block's
    branch, 0 = through its shortcut; None = ungated (the full gradient). The start is captured by a
    forward pre-hook on the first block (where all 2^n paths start) and differentiated with
    torch.autograd.grad, so parameter .grad stays untouched. The loss is the SUM of per-example losses
    (a segmentation example's loss is its pixel mean): in eval mode (the caller sets it) examples do not
    interact, so row i is exactly example i's gradient.
    """
    edges = path_edges(flow)
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(edges[0].name).register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    edits = {} if masks is None else {e.name: GateGradient(1 - masks[i], masks[i]) for i, e in enumerate(edges)}
    try:
        with edited(model, edits), torch.enable_grad():
            start = x.detach().requires_grad_()  # so a block right at the input still has a graph
            logits = model(start)
            ignore = -100 if ignore_index is None else ignore_index
            loss = F.cross_entropy(logits, y, ignore_index=ignore, reduction="none")
            per_example = loss.flatten(1).mean(1) if loss.ndim > 1 else loss
            (grad,) = torch.autograd.grad(per_example.sum(), captured[0])
    finally:
        handle.remove()
    return grad.detach()


def same_examples(ctx: AblationContext, count: int, batch_size: int):
    """The first ``count`` training examples (unshuffled, unaugmented; cycling if the split is smaller),
    in batches: re-read for each k rather than stored, so large images cost no memory."""
    left = count
    while left > 0:
        for x, y in ctx.task.train.batches(batch_size, train=False):
            b = min(len(x), left)
            yield x[:b], y[:b]
            left -= b
            if left == 0:
                return


class PathGradientKey(Key):
    k: int = Field(description="Path length: how many residual branches the sampled path goes through.")


class PathGradientRecord(Record):
    key: PathGradientKey
    samples: int = Field(description="Sampled paths (one random k-subset per example).")
    grad_norm_mean: float = Field(description="Mean input-gradient norm through one path of length k.")
    grad_norm_sd: float
    path_share: float = Field(description="Share of all paths that have length k: C(n, k) / 2^n.")
    total_gradient: float = Field(description="grad_norm_mean x the number of paths of length k.")


class PathGradients(TestTimeAblation):
    """Veit path-length gradients: per-example sampled paths, gradient norm vs path length, effective window."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "none"  # gates the backward pass only; the forward pass is the intact model
    measure: ClassVar = "profile"
    Params: ClassVar = PathGradientParams
    Summary: ClassVar = PathGradientSummary
    Record: ClassVar = PathGradientRecord

    def applicable(self, flow: IdentityFlow) -> str | None:
        if parallel_skips(flow):
            return ("long skips bypass blocks in parallel, so gate settings are not single paths and the binomial "
                    "path count (Veit) does not hold; path_gradients needs identity paths in series")
        return None if path_edges(flow) else "no identity path: no residual block with a shortcut to gate"

    def validate(self, flow: IdentityFlow) -> None:
        n = len(path_edges(flow))
        bad = [k for k in self.params.ks or () if not 0 <= k <= n]
        if bad:
            raise ValueError(f"ks {bad} outside 0..{n}: this architecture has {n} path edges")

    def path_lengths(self, n: int) -> list[int]:
        p = self.params
        if p.ks is not None:
            return sorted({k for k in p.ks if 0 <= k <= n})
        return sorted({*range(0, n + 1, p.k_step), n})

    def run(self, ctx: AblationContext) -> AblationResult:
        p = self.params
        model, flow = ctx.model.eval(), ctx.flow
        n = len(path_edges(flow))
        ks = self.path_lengths(n)
        gen = torch.Generator().manual_seed(p.seed * 1_000_003 + ctx.seed)
        norms: dict[int, list[float]] = {k: [] for k in ks}
        for k in ks:  # every k sees the same examples: the first samples_per_k of the training split
            for x, y in same_examples(ctx, p.samples_per_k, p.batch_size):
                x, y = x.to(ctx.device), y.to(ctx.device)
                masks = sample_masks(n, k, len(x), gen).to(ctx.device)  # a random k-subset per example
                norms[k] += sampled_input_gradients(model, flow, x, y, masks, ctx.info.ignore_index).tolist()
        mean = np.array([np.mean(norms[k]) for k in ks])
        lengths, total = total_gradient(n, ks, mean)
        lo, hi = central_window(total, p.window)
        share = path_length_distribution(n)
        records = [{"key": {"k": k}, "samples": len(norms[k]), "grad_norm_mean": float(mean[i]),
                    "grad_norm_sd": float(np.std(norms[k])), "path_share": share[k],
                    "total_gradient": float(total[k - ks[0]])} for i, k in enumerate(ks)]
        summary = PathGradientSummary(
            n_blocks=n, window_low=int(lengths[lo]), window_high=int(lengths[hi]),
            window_mass=p.window, window_path_share=path_fraction(n, lengths[lo], lengths[hi]),
            mean_gradient_path_length=float((lengths * total).sum()), mean_path_length=n / 2)
        return AblationResult(records, summary, None)
