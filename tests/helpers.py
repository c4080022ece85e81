"""Small helpers shared by several test modules."""

from __future__ import annotations

import json
from pathlib import Path

import bench
from bench.conformance import one_torch_thread  # noqa: F401  (the tests share the package's)


def run_study(config: Path, out: Path, *sets: str, **options) -> dict:
    """``bench.run(CONFIG, out=OUT, set_options=SETS, **options)`` in this process on one thread (the library
    API: behaviour tests go through it, the CLI's own tests through ``bench.cli.main``); returns results.json
    as written."""
    with one_torch_thread():
        bench.run(config, out=out, set_options=sets, **options)
    return json.loads((out / "results.json").read_text())


def without(obj, keys: set[str]):
    """``obj`` (nested dicts and lists, e.g. results.json) without the dict keys in ``keys`` at any depth: what
    must be equal between runs once the wall-clock and provenance fields are set aside."""
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj


QUICKSTART_RESULTS = Path(__file__).resolve().parents[1] / "reports" / "quickstart" / "results.json"


def write_run(folder: Path, data: dict) -> Path:
    """A run folder holding only ``data`` as its results.json (readers' tests: leaderboard, compare, reports)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder
