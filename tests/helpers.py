"""Small helpers shared by several test modules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from bench.cli import main


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread, restored afterwards.

    Tiny models on a shared 2-core box only contend with more threads, and CPU sums may depend on the
    thread count, so runs compared bit for bit must use the same count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_study(config: Path, out: Path, *sets: str) -> dict:
    """``bench run CONFIG --out OUT --set ...`` in this process on one thread; returns results.json."""
    with one_torch_thread():
        argv = ["run", str(config), "--out", str(out), "--quiet"]
        assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    return json.loads((out / "results.json").read_text())
