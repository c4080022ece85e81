"""The plain run path: planning trains nothing, objects are built in one place and checked when
registered, RunDir alone formats run-folder paths, and cli / reports_index do not import each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bench.ablations.base import Ablation
from bench.errors import BenchError
from bench.plan import ResolvedStudy, load_study, plan
from bench.registry import Registry
from bench.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]


def test_plan_lists_every_cell_without_training(monkeypatch):
    import bench.train

    monkeypatch.setattr(bench.train, "train", lambda *a, **k: pytest.fail("planning trained a model"))
    study = load_study(ROOT / "configs" / "quickstart.yaml")
    assert isinstance(study, ResolvedStudy) and study.name == "quickstart" and study.seeds == study.cfg.seeds
    units = plan(study)
    ids = [u.id for u in units]
    assert len(ids) == len(set(ids))
    # one baseline per task x architecture x seed, + the train-time variants where they apply
    assert sum(u.variant == "baseline" for u in units) == len(study.pairs()) * len(study.seeds)
    assert all(u.ablation for u in units if u.variant != "baseline")
    t, a = study.pairs()[0]
    assert ids[0] == f"{t}__{a}__baseline__s{study.seeds[0]}"
    assert study.default_dir().name.startswith("quickstart-")


def test_registry_build_is_the_one_place_objects_are_built():
    reg = Registry("architectures")

    @reg.register("toy")
    def toy(info, width: int = 2):
        """A toy."""
        return ("built", info, width)

    assert reg.build({"name": "toy", "width": 5}, "INFO") == ("built", "INFO", 5)
    with pytest.raises(BenchError, match="unknown architecture 'toi'"):
        reg.build({"name": "toi"}, "INFO")


def test_registration_checks_the_kind_of_object():
    ablations = Registry("ablations", base="bench.ablations.base:Ablation")

    class NotAnAblation:
        """Has run() but does not derive from Ablation."""

        def run(self, ctx): ...

    with pytest.raises(BenchError, match=r"ablation 'wrong' .*not a subclass of bench\.ablations\.base\.Ablation"):
        ablations.register("wrong")(NotAnAblation)

    class Fine(Ablation):
        """Derives from Ablation."""

    ablations.register("fine")(Fine)
    assert ablations.get("fine") is Fine
    archs = Registry("architectures")
    with pytest.raises(BenchError, match="architecture 'net' .*not a factory"):
        archs.add("net", 42, source="plugin test")


def test_only_rundir_formats_run_folder_paths():
    """The grep of the closing note: no module but bench/rundir.py builds a cell, checkpoint or
    bootstrap path (``"cells"``, ``checkpoints``, ``.npz``, ``.dependence_boot``, ``__s{``)."""
    pattern = re.compile(r"""/ "cells"|/ "checkpoints"|\.npz"|dependence_boot\.npy"|__s\{|\.bench-run|\.bench\.lock""")
    offenders = []
    for path in sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "models").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]):
        if path.name == "rundir.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    rd = RunDir("/x")
    assert str(rd.cell_npz("a__b__c__s0")) == "/x/cells/a__b__c__s0.npz"


def _imports(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_cli_and_reports_index_do_not_import_each_other():
    """`bench reports` uses reports_index; reports_index's own main no longer goes back through the cli."""
    assert "bench.cli" not in _imports(ROOT / "bench" / "reports_index.py")
