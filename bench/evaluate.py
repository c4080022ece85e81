"""Run a model over a split and collect per-example statistics (bench.metrics)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from bench.data import Split, TaskInfo
from bench.metrics import Outcome, example_stats


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.no_grad()
def predict_stats(model: nn.Module, split: Split, info: TaskInfo, *, batch_size: int, device: torch.device,
                  amp: str = "off", channels_last: bool = False) -> Outcome:
    model.eval()
    chunks = []
    for x, y in split.batches(batch_size, train=False):
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(x)
        chunks.append(example_stats(logits.argmax(1).cpu(), y, info))
    return Outcome(torch.cat(chunks).numpy().astype(np.float64), info)
