"""Small helpers shared by several test modules."""

from __future__ import annotations

import json
from pathlib import Path

from bench.cli import main
from bench.conformance import one_torch_thread  # noqa: F401  (the tests share the package's)


def run_study(config: Path, out: Path, *sets: str) -> dict:
    """``bench run CONFIG --out OUT --set ...`` in this process on one thread; returns results.json."""
    with one_torch_thread():
        argv = ["run", str(config), "--out", str(out), "--quiet"]
        assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    return json.loads((out / "results.json").read_text())
