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
    if select:
        data = merged(data, out_dir / "latest.json")
    write_text(out_dir / "latest.json", json.dumps(data, indent=2))
    write_text(out_dir / "latest.md", render(data))
    return out_dir / "latest.md"


def merged(data: dict, previous: Path) -> dict:
    """A ``-k`` run's benchmarks with the rest of the previous latest.json, so a partial run replaces only
    the rows it measured; a kept row says when, and on which CPU, it was measured (the machine changes)."""
    if not previous.is_file():
        return data
    old = json.loads(previous.read_text())
    ran = {b["fullname"] for b in data["benchmarks"]}
    kept = [b for b in old.get("benchmarks", []) if b["fullname"] not in ran]
    for b in kept:
        b["extra_info"].setdefault("measured", old.get("datetime", "?")[:16])
        b["extra_info"].setdefault("measured_on", cpu_of(old))
    return {**data, "benchmarks": kept + data["benchmarks"]}


def cpu_of(data: dict) -> str:
    """The CPU a pytest-benchmark JSON was measured on (its machine_info), as the table's head names it."""
    return data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "an unrecorded CPU")


def render(data: dict) -> str:
    rows = []
    for b in data["benchmarks"]:
        info = b["extra_info"]
        rows.append([info["target"], f"{info['ratio']:.2f}x", *goal_cells(info), "; ".join(notes(info))])
    head = (f"Measured {data.get('datetime', '?')[:19]} on {cpu_of(data)}"
            f" (CPU time of 1 thread unless a row says wall clock; {'CUDA present, unused' if torch.cuda.is_available() else 'no GPU'}), "
            f"Python {platform.python_version()}, torch {torch.__version__}.")
    out = head + "\n\n" + table(["what", "ratio", "target", "", "note"], rows) + "\n"
    peaks = [b["extra_info"] for b in data["benchmarks"] if "peak" in b["extra_info"]]
    return out + ("\n" + render_peaks(peaks) if peaks else "")


def goal_cells(info: dict) -> list[str]:
    """Target and whether it is met; a measurement without a goal (the peak rows) says so."""
    if info.get("goal") is None:
        return ["—", "measured"]
    return [f">= {info['goal']}x", "met" if info["ratio"] >= info["goal"] else "NOT met"]


def notes(info: dict) -> list[str]:
    out = [info.get("note", "")]
    if "measured" in info:
        on = f" on {info['measured_on']}" if "measured_on" in info else ""
        out.append(f"measured {info['measured']}{on} (not re-run)")
    if "data_vs_model" in info:
        out.append(f"data path {info['data_vs_model']}x faster than the model")
    return [n for n in out if n]


def render_peaks(peaks: list[dict]) -> str:
    """The distance to the limit: each quickstart model's training against this machine's peak in the same
    dtype and thread count, measured in the same run (bench.benchmarks.test_training_distance_to_peak)."""
    rows = []
    for info in peaks:
        for precision, r in info["peak"].items():
            rows.append([info["model"], precision, f"{r['images_per_s']:.1f}", f"{info['flop_per_image'] / 1e6:.1f}",
                         f"{r['flop_per_s'] / 1e9:.2f}", f"{r['peak_flop_per_s'] / 1e9:.2f}",
                         f"{100 * r['fraction_of_peak']:.1f}%"])
        rows.append([info["model"], "bf16 / fp32", f"{info['ratio']:.2f}x", "", "", "", ""])
    first = peaks[0]
    flags = ", ".join(first.get("bf16_cpu_flags") or []) or "none: bf16 emulated"
    head = (f"Distance to the peak, training the quickstart's models (CPU: {first['cpu']}; bf16 flags: {flags}; "
            f"peak: a {first['peak_matmul']} in the same dtype; FLOPs counted by torch's FlopCounterMode: "
            "convolutions and matmuls of forward and backward).")
    return head + "\n\n" + table(["model", "precision", "images/s", "MFLOP/image", "GFLOP/s", "peak GFLOP/s",
                                    "of peak"], rows) + "\n"
