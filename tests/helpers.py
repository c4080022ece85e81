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


def without(obj, keys: set[str]):
    """``obj`` (nested dicts and lists, e.g. results.json) without the dict keys in ``keys`` at any depth: what
    must be equal between runs once the wall-clock and provenance fields are set aside."""
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj
