"""What a result needs to be reproduced: versions, git state, device, platform."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from bench.precision import bf16_cpu_flags, bf16_native
from bench.version import __version__


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The CPU's model name and the kernel set torch dispatches to (e.g. "AMD EPYC 7B13; torch AVX512").

    CPU results are bit-identical only on the same CPU and thread count (docs/reproducibility.md), so a
    result says which CPU computed it; ``platform.processor()`` is empty on most Linux machines.
    """
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return name
    return f"{name}; torch {capability}"


CELL_PROVENANCE = ("git_commit", "git_dirty", "bench_version", "torch", "device_name")  # per cell, for resumes


def provenance(device: torch.device) -> dict:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "bench_version": __version__,  # the code that ran (an editable install's metadata can be stale)
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "segmentation_models_pytorch": _version("segmentation-models-pytorch"),
        "albumentations": _version("albumentations"),
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_model(),
        # what `train.amp: auto` resolves to here: bf16 iff native (CUDA: torch.cuda.is_bf16_supported; a CPU:
        # these flags among amx_bf16/avx512_bf16, none on an AVX2-only CPU); a cell records its own precision
        "bf16_native": bf16_native(device),
        "bf16_cpu_flags": bf16_cpu_flags(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "deterministic": device.type == "cpu",
    }
