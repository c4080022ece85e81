"""Interrupted studies resume: SIGKILL at several points, re-run, and results equal an uninterrupted run.
Also: the same config and seed give identical results (CPU determinism)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
name: resume
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 384, n_test: 64, image_size: 16, num_classes: 3}
  cls: {name: synthetic_shapes, target: image, n_train: 384, n_test: 64, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 14, width: 8}
train: {epochs: 4, batch_size: 32, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
  - {name: multi_lesion, max_k: 3, samples: 2}
  - {name: identity_readout, epochs: 1}
  - {name: skip_removal}
verdict: {dense: seg, global: cls}
bootstrap: 200
"""
VOLATILE = {"wall_s", "images_per_s", "timings", "train_s", "eval_s"}


def stable(obj):
    """results.json without wall-clock fields and provenance."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE and k != "provenance"}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def bench_run(config: Path, out: Path, **kw):
    cmd = [sys.executable, "-m", "bench", "run", str(config), "--out", str(out), "--quiet"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def wait_for(condition, proc, timeout=300.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "resume.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def reference(config):
    out = config.parent / "reference"
    proc = bench_run(config, out)
    assert proc.wait() == 0, proc.stderr.read()
    return stable(json.loads((out / "results.json").read_text()))


_SEEN: dict[Path, set[int]] = {}


def _epochs_written(ckpt: Path) -> int:
    """How many epoch-end checkpoints of one cell were seen (each rewrite changes the mtime)."""
    with contextlib.suppress(FileNotFoundError):
        _SEEN.setdefault(ckpt, set()).add(ckpt.stat().st_mtime_ns)
    return len(_SEEN.get(ckpt, ()))


KILL_POINTS = {
    "after-first-cell": lambda d: len(list((d / "cells").glob("*.json"))) >= 1,
    "mid-training": lambda d: (d / "checkpoints" / "seg__res__no_identity__s0.pt").exists(),
    "during-ablations": lambda d: _epochs_written(d / "checkpoints" / "cls__res__baseline__s0.pt") >= 4
    and not (d / "cells" / "cls__res__baseline__s0.json").exists(),
    "before-assembly": lambda d: len(list((d / "cells").glob("*.json"))) >= 4,
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_equals_uninterrupted(point, config, reference, tmp_path):
    out = tmp_path / "run"
    proc = bench_run(config, out)
    hit = wait_for(lambda: KILL_POINTS[point](out), proc)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert hit, f"kill point {point} was never reached"
    assert not (out / "results.json").exists() or point == "before-assembly"
    for f in (out / "cells").glob("*.json"):
        json.loads(f.read_text())  # no half-written file under its final name
    done = bench_run(config, out)
    assert done.wait() == 0, done.stderr.read()
    assert stable(json.loads((out / "results.json").read_text())) == reference


@pytest.mark.slow
def test_same_config_same_results(config, reference, tmp_path):
    out = tmp_path / "again"
    proc = bench_run(config, out)
    assert proc.wait() == 0
    assert stable(json.loads((out / "results.json").read_text())) == reference


def test_restart_recomputes_and_changed_config_is_refused(tmp_path, capsys):
    from bench.cli import main
    from tests.test_cli import TINY

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    first = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "seeds=[1]"]) == 2
    assert "seeds: [0] -> [1]" in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--restart"]) == 0
    again = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert first.keys() == again.keys() and all(first[k] != again[k] for k in first)
