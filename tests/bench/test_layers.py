"""The package's import contracts (pyproject.toml, [tool.importlinter]) hold, and they catch what they are for.

`lint-imports` (import-linter, on grimp's import graph) reads every import statement, those inside functions
included: an import cannot be hidden from the check by moving it into a function. `make test` runs it
first; these tests run it too, so a bare `pytest` checks the layers, and they plant violations in a copy of
the package to show that each kind of breach fails it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's `bench`, not the installed one
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_import_contracts():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("module, planted, broken", [
    # a cycle through an import inside a function: flow (the bottom layer) reaching up to the CLI
    ("flow.py", "def _planted():\n    import bench.cli  # noqa: F401\n", "No import cycles"),
    # the layers: the cell function reaching up to its driver
    ("cell.py", "def _planted():\n    from bench import driver  # noqa: F401\n", "One run path"),
    # an ablation importing the reporting layer
    ("ablations/lesion.py", "def _planted():\n    import bench.report  # noqa: F401\n", "Ablations never import"),
    # the verdict writing files
    ("verdict.py", "def _planted():\n    import bench.io  # noqa: F401\n", "The analysis is pure"),
])
def test_a_planted_violation_breaks_its_contract(tmp_path, module, planted, broken):
    shutil.copytree(ROOT / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "bench" / module, "a") as f:
        f.write("\n\n" + planted)
    out = lint(tmp_path)
    assert out.returncode != 0
    assert next(line for line in out.stdout.splitlines() if line.startswith(broken)).endswith("BROKEN"), out.stdout
