"""Every committed study's cells were computed with the code HEAD has: their recorded code hashes equal the
hashes of today's components (bench.codehash), so growing, resuming or re-assembling a committed study at HEAD
retrains nothing.

Why: a component's hash covers the modules it imports (``tasks/synthetic.py`` imports ``tasks/derived.py``), so
an edit that looks local can make every cell of several studies stale: ``bench run`` would then retrain them with
a warning. A first version of ``classify_among`` edited ``tasks/derived.py`` and did exactly that to five studies
(found by review, reverted). A deliberate plugin fix that should retrain a study fails here: say so by
re-computing the study, not by editing this test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import load_config
from bench.plan import build_ablations, code_hashes

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted(p.parent for p in (ROOT / "reports").glob("*/config.resolved.yaml") if (p.parent / "cells").is_dir())


def test_the_committed_studies_are_found():
    assert len(STUDIES) >= 8 and {"quickstart", "shapes_difficulty"} <= {p.name for p in STUDIES}


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_a_committed_studys_cells_match_todays_code(study, monkeypatch):
    if "../shared/data" in (study / "config.resolved.yaml").read_text() and not (ROOT / "../shared/data").is_dir():
        pytest.skip(f"{study.name} reads ../shared/data, which is absent here (its tasks cannot be built)")
    monkeypatch.chdir(ROOT)  # data paths in the configs resolve against the repository root
    cfg = load_config(study / "config.resolved.yaml")
    now = code_hashes(cfg, build_ablations(cfg))
    stale = {}
    for cell in sorted((study / "cells").glob("*.json")):
        for component, recorded in json.loads(cell.read_text()).get("code", {}).items():
            if now.get(component) != recorded:
                stale.setdefault(component, (recorded, now.get(component), cell.name))
    assert not stale, f"{study.name}: cells computed with other code (component: recorded, today, a cell): {stale}"
