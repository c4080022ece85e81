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


def _git_at(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def plan_record(config: Path, earlier_heads: list[str], computing: bool) -> dict | None:
    """The study's analysis plan (its config file: measure, headline, stopping and exclusion rules, seeds) as the
    git repository holding it knows it: the commit that last changed it, whether it has uncommitted changes,
    the repository's HEAD now, and whether the plan's last change came after the first cells were computed
    (the HEAD of the first invocation that computed cells: ``earlier_heads[0]``, or HEAD now if this one is
    the first and ``computing``). A plan changed after cells existed is a new plan; the report says so.
    None outside a git repository."""
    config = Path(config).resolve()
    folder = config.parent
    if _git_at(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    head = _git_at(folder, "rev-parse", "HEAD")
    last = _git_at(folder, "log", "-1", "--format=%H %cI", "--", config.name) or ""
    commit, _, when = last.partition(" ")
    status = _git_at(folder, "status", "--porcelain", "--", config.name)
    first = earlier_heads[0] if earlier_heads else (head if computing else None)
    after = None
    if commit and first:
        code = subprocess.run(["git", "-C", str(folder), "merge-base", "--is-ancestor", commit, first],
                              capture_output=True, timeout=10).returncode
        after = None if code not in (0, 1) else code == 1
    return {"config": str(config), "commit": commit or None, "committed_at": when or None,
            "dirty": None if status is None else bool(status), "head": head, "first_cells_head": first,
            "changed_after_cells": after}
