"""``bench bench``: run the speed benchmarks (pytest-benchmark) and print their side-by-side ratios.

The benchmarks are the module bench.benchmarks, shipped with the package, so this runs from an installed
bench as well as from a checkout (pytest-benchmark needed: the ``dev`` extra). Writes
reports/perf/latest.json (pytest-benchmark's raw output) and reports/perf/latest.md (the table shown in the
README), with the machine and versions.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.io import write_text
from bench.report import table

MODULE = "bench.benchmarks"  # the benchmarks themselves (tests/benchmarks/ collects the same in a checkout)


def run_benchmarks(out_dir: Path, select: str | None = None) -> Path:
    if importlib.util.find_spec("pytest_benchmark") is None:
        raise BenchError("bench bench needs pytest-benchmark, which is not installed; "
                         "pip install 'identity-bench[dev]' (or pytest-benchmark)")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = Path(tempfile.mkstemp(suffix=".json")[1])
    # In a folder of its own: no pytest.ini or conftest.py of the caller's working directory applies. As a
    # checkout's pyproject does for the test suite, a warning raised by bench's own code fails the benchmark.
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "--pyargs", MODULE, "--benchmark-only",
           f"--benchmark-json={raw}", "-p", "no:cacheprovider", "-o", "filterwarnings=error:::bench"]
    cmd += ["-k", select] if select else []
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as cwd:
        done = subprocess.run(cmd, cwd=cwd)
    if done.returncode != 0:
        raw.unlink(missing_ok=True)
        raise BenchError(f"benchmarks failed (pytest exit {done.returncode}); rerun with: {' '.join(cmd)}")
    data = json.loads(raw.read_text())
    raw.unlink()
    write_text(out_dir / "latest.json", json.dumps(data, indent=2))
    write_text(out_dir / "latest.md", render(data))
    return out_dir / "latest.md"


def render(data: dict) -> str:
    rows = []
    for b in data["benchmarks"]:
        info = b["extra_info"]
        ok = info["ratio"] >= info["goal"]
        notes = [info.get("note", "")]
        if "data_vs_model" in info:
            notes.append(f"data path {info['data_vs_model']}x faster than the model")
        rows.append([info["target"], f"{info['ratio']:.2f}x", f">= {info['goal']}x", "met" if ok else "NOT met",
                     "; ".join(n for n in notes if n)])
    machine = data.get("machine_info", {})
    head = (f"Measured {data.get('datetime', '?')[:19]} on {machine.get('cpu', {}).get('brand_raw', platform.processor())}"
            f" (CPU time of 1 thread unless a row says wall clock; {'CUDA present, unused' if torch.cuda.is_available() else 'no GPU'}), "
            f"Python {platform.python_version()}, torch {torch.__version__}.")
    return head + "\n\n" + table(["what", "ratio", "target", "", "note"], rows) + "\n"
