"""The package's import contracts (pyproject.toml, [tool.importlinter]) hold, and they catch what they are for.

`lint-imports` (import-linter, on grimp's import graph) reads every import statement, those inside functions
included: an import cannot be hidden from the check by moving it into a function. `make test` runs it
first; these tests run it too, so a bare `pytest` checks the layers, and they plant violations in a copy of
the package to show that each kind of breach fails it."""

from __future__ import annotations

import ast
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


# -- models/ and tasks/: installed as bench.models and bench.tasks, outside grimp's view of bench/ ---------------
RUN_MACHINERY = ("bench.cli", "bench.api", "bench.driver", "bench.executors", "bench.cell", "bench.analysis",
                 "bench.report", "bench.sections", "bench.leaderboard", "bench.compare")


def module_imports(root: Path, folders: tuple[str, ...] = ("bench", "models", "tasks")) -> dict[str, set[str]]:
    """Every import statement (inside functions too) of the package's files, by installed module names:
    bench/x.py is bench.x, models/x.py is bench.models.x, tasks/x.py is bench.tasks.x."""
    out: dict[str, set[str]] = {}
    for folder in folders:
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            prefix = ["bench"] if folder == "bench" else ["bench", folder]
            name = ".".join(prefix + (parts[:-1] if parts[-1] == "__init__" else parts))
            found = out.setdefault(name, set())
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
    return out


def plugin_folder_imports(root: Path) -> dict[str, set[str]]:
    return {m: i for m, i in module_imports(root, ("models", "tasks")).items()}


def cycles(root: Path) -> list[list[str]]:
    """Import cycles among bench/, models/ and tasks/ together (a module importing its parent package aside:
    Python loads a parent first), as sorted module lists."""
    imports = module_imports(root)
    known = set(imports)
    edges = {}
    for module, imported in imports.items():
        named = {i if i in known else i.rsplit(".", 1)[0] for i in imported if i.startswith("bench")}
        edges[module] = {i for i in named if i in known and i != module and not module.startswith(i + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_plugin_folders_join_the_graph_without_cycles_or_run_machinery():
    """The built-in models and tasks are plugins: they import the core (flow, data, registry ...), never the run
    machinery, and the core never imports them back (they register through entry points)."""
    assert cycles(ROOT) == []
    for module, imported in plugin_folder_imports(ROOT).items():
        bad = sorted(i for i in imported if i.startswith(RUN_MACHINERY))
        assert not bad, f"{module} imports {bad}"


def test_a_cycle_through_a_model_plugin_is_found(tmp_path):
    for folder in ("bench", "models", "tasks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "bench" / "flow.py", "a") as f:  # the core reaching into a plugin that imports it
        f.write("\n\ndef _planted():\n    import bench.models.resnet_cifar  # noqa: F401\n")
    # in a fresh interpreter whose `bench` is the copy (this one has imported the checkout's)
    code = ("import sys; from pathlib import Path; from tests.bench.test_layers import cycles; "
            "print(cycles(Path(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'bench.flow'" in out.stdout and "'bench.models.resnet_cifar'" in out.stdout, out.stdout
