"""Run a model over a split and collect per-example statistics (bench.metrics)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.data import Split, TaskInfo
from bench.errors import BenchError
from bench.metrics import Outcome, logits_stats
from bench.precision import autocast  # the forward pass's precision; bench.sweep and bench.train import it here


@torch.no_grad()
def predict_stats(model: nn.Module, split: Split, info: TaskInfo, *, batch_size: int, device: torch.device,
                  amp: str = "off", order: torch.Tensor | None = None) -> Outcome:
    """Per-example statistics of ``model`` on ``split``, in the split's order even when ``order`` (the
    order the examples are visited in) is given. Batches stay NCHW: a model trained ``channels_last``
    keeps NHWC weights and runs its convolutions in that layout either way. ``amp``: the training's
    (bench.precision), so a cell is evaluated in the precision it was trained in; the statistics are fp64."""
    model.eval()
    chunks = []
    for x, y in eval_batches(split, batch_size, order):
        x = x.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        chunks.append(logits_stats(logits, y, info))
    return Outcome(in_split_order(torch.cat(chunks).numpy().astype(np.float64), order), info)


def eval_batches(split: Split, batch_size: int, order: torch.Tensor | None):
    """The split's evaluation batches, visited in ``order`` when given."""
    if order is None:
        return split.batches(batch_size, train=False)
    try:
        return split.batches(batch_size, train=False, order=order)
    except TypeError:
        raise BenchError(f"{type(split).__name__}.batches() takes no order=: this ablation evaluates the test set "
                         "in a random order; add the keyword (see bench.data.Split)") from None


def in_split_order(stats: np.ndarray, order: torch.Tensor | None) -> np.ndarray:
    """Undo a visiting order: row i of the result belongs to example i."""
    if order is None:
        return stats
    out = np.empty_like(stats)
    out[order.numpy()] = stats
    return out
