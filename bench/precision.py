"""The precision a cell computes in: ``train.amp`` resolved against the device it runs on (issue 24).

``auto`` (recommended) is bf16 where the device computes bf16 natively — a CUDA GPU with bf16 support, or
a CPU with AMX or AVX-512-BF16 (its flags, read at run time and recorded in provenance) — and fp32
elsewhere: on an AVX2-only CPU bf16 is emulated and about 10x slower than fp32. ``bf16`` autocasts on any
CPU or CUDA device (emulated where not native: slow, same rounding); ``fp16`` on CUDA only (with a grad
scaler), fp32 on a CPU; ``off`` is fp32. Autocast covers the model's forward pass: the loss is taken on
fp32 logits, and metrics, statistics and the bootstrap are fp32/fp64 whatever the precision.
"""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import torch

from bench.errors import BenchError

PRECISIONS = ("fp32", "bf16", "fp16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of a CPU with bf16 arithmetic in hardware
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where they cannot be read: no native bf16 assumed."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def bf16_cpu_flags() -> list[str]:
    """The flags among ``BF16_CPU_FLAGS`` this CPU has: what decides ``auto`` on a CPU."""
    return sorted(set(BF16_CPU_FLAGS) & cpu_flags())


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (emulation, slower than fp32, does not count)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and bool(bf16_cpu_flags())


def resolve_precision(amp: str, device: torch.device) -> str:
    """'fp32' | 'bf16' | 'fp16': what ``train.amp`` computes in on ``device`` (a cell's recorded precision)."""
    if amp == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    if amp == "bf16" and device.type in ("cpu", "cuda"):
        return "bf16"
    if amp == "fp16" and device.type == "cuda":
        return "fp16"
    if amp in ("off", "bf16", "fp16"):
        return "fp32"
    raise BenchError(f"train.amp: {amp!r} is not one of 'off', 'auto', 'bf16', 'fp16'")


def recorded(record: dict) -> str:
    """The precision a cell's train record or an epoch checkpoint says it computed in; fp32 where it says none
    (written before they recorded it: ``train.amp`` was ignored on a CPU, where every committed cell was computed)."""
    return record.get("precision") or "fp32"


def autocast(device: torch.device, amp: str, *, cache: bool = True) -> contextlib.AbstractContextManager:
    """The autocast context of the model's forward pass under ``amp`` (none for fp32). Inside a region already
    autocast on this device it adds none: the outer region's settings hold. ``cache=False`` for a region in which
    weights change (a readout trained inside an ablation): autocast keeps each weight's low-precision copy until
    its outermost region ends, so a cached region would go on computing with the first step's weights."""
    precision = resolve_precision(amp, device)
    if precision == "fp32" or torch.is_autocast_enabled(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision], cache_enabled=cache)
