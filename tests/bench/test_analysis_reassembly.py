"""The committed quickstart reference re-assembles from its cells to the committed results.json.

Assembly (comparisons, intervals, conditioning, the verdict) is a pure function of the cells; a change to
it that moves a committed number fails here, before a reviewer finds the reference out of date. Provenance,
timings and the invocation list describe the run, not its results, and are left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bench

ROOT = Path(__file__).resolve().parents[2]
RUN_FACTS = {"provenance", "timings", "invocations"}


def results_of(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in RUN_FACTS}


def test_the_quickstart_reference_reassembles_from_its_cells_to_the_same_results(tmp_path):
    folder = shutil.copytree(ROOT / "reports" / "quickstart", tmp_path / "quickstart")
    cells = sorted(p.name for p in (folder / "cells").iterdir())
    results = bench.run(folder / "config.resolved.yaml", out=folder)
    assert sorted(p.name for p in (folder / "cells").iterdir()) == cells  # nothing was trained
    assert results.invocations[-1].cells_computed == 0
    assert results_of(folder / "results.json") == results_of(ROOT / "reports" / "quickstart" / "results.json")
