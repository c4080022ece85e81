"""Interrupted studies resume: a study SIGKILLed at several points in a row and re-run each time ends
with the results.json of an uninterrupted run, exactly (wall-clock fields and provenance aside).

At every kill: no file exists half-written under its final name (cells, their npz, checkpoints all
load), and the cells already written equal the uninterrupted run's. Finished cells are never
recomputed, and a training killed after an epoch checkpoint continues from it (its next checkpoint
is a later step, never the first epoch again). --restart starts over; a changed config against an
existing folder is refused with the difference shown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.results import Cell
from tests.helpers import run_study, without

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
name: resume
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 96, n_test: 32, image_size: 16, num_classes: 3}
  cls: {name: synthetic_shapes, target: image, n_train: 96, n_test: 32, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 3, batch_size: 16, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
  - {name: multi_lesion, max_k: 2, samples: 2}
  - {name: identity_readout, epochs: 1}
  - {name: skip_removal}
verdict: {dense: seg, global: cls}
bootstrap: 100
"""
# cells run in this order: seg baseline, seg no_identity, cls baseline, cls no_identity
SEG, CLS = "seg__res__baseline__s0", "cls__res__baseline__s0"
VOLATILE = {"wall_s", "images_per_s", "timings", "resumed_from_step", "provenance", "invocations"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the reference below runs on one thread too


def stable(obj):
    """results.json (or a cell) without wall-clock fields, provenance and how it was resumed."""
    return without(obj, VOLATILE)


class Watch:
    """Polls a run folder: which cells are written, and the step of every checkpoint each time it changes."""

    def __init__(self, out: Path):
        self.out, self.mtime, self.steps = out, {}, {}

    def poll(self) -> None:
        for p in (self.out / "checkpoints").glob("*.pt"):
            try:
                m = p.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if self.mtime.get(p.stem) != m:
                self.mtime[p.stem] = m
                self.steps.setdefault(p.stem, []).append(torch.load(p, weights_only=True)["step"])

    def step(self, cell: str) -> int | None:
        return self.steps.get(cell, [None])[-1]

    def written(self, cell: str) -> bool:
        return (self.out / "cells" / f"{cell}.json").exists()

    def cells(self) -> list[Path]:
        return sorted((self.out / "cells").glob("*.json"))


def run_until(config: Path, out: Path, watch: Watch, condition, timeout: float = 300.0) -> tuple[bool, int | None]:
    """Start `bench run`; SIGKILL it the moment `condition(watch)` holds. (condition hit, exit code)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(config), "--out", str(out), "--quiet"],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0, hit = time.time(), False
    while time.time() - t0 < timeout and proc.poll() is None:
        watch.poll()
        if condition is not None and condition(watch):
            os.kill(proc.pid, signal.SIGKILL)
            hit = True
            break
        time.sleep(0.002)
    _, err = proc.communicate()  # waits, and closes the stderr pipe
    code = proc.returncode
    watch.poll()
    assert hit or condition is None, f"exit {code} before the kill point: {err.decode()[-2000:]}"
    return hit, code


@pytest.mark.slow
def test_sigkill_at_six_points_then_resume_equals_uninterrupted(tmp_path):
    config = tmp_path / "resume.yaml"
    config.write_text(CONFIG)
    reference = run_study(config, tmp_path / "reference")
    ref_cells = {c["id"]: stable(c) for c in reference["cells"]}
    per_epoch, total = reference["cells"][0]["train"]["steps_per_epoch"], reference["cells"][0]["train"]["steps"]
    assert total == 3 * per_epoch

    def mid(cell):
        return lambda w: w.step(cell) is not None and w.step(cell) < total and not w.written(cell)

    def trained(cell):
        return lambda w: w.step(cell) == total and not w.written(cell)

    points = [  # (name, kill when, what must hold after the kill)
        ("first epoch of the first cell", lambda w: (w.out / "config.resolved.yaml").exists(),
         lambda w: not w.cells()),
        ("first cell after an epoch checkpoint", mid(SEG), mid(SEG)),
        ("first cell trained, during its ablations", trained(SEG), trained(SEG)),
        ("a later cell mid-training", mid(CLS), lambda w: mid(CLS)(w) and len(w.cells()) == 2),
        ("a later cell during its ablations", trained(CLS), lambda w: trained(CLS)(w) and len(w.cells()) == 2),
        ("all cells written, before results.json", lambda w: len(w.cells()) == 4,
         lambda w: not (w.out / "results.json").exists()),
    ]
    out = tmp_path / "run"
    watch = Watch(out)
    finished: dict[str, int] = {}  # cell file -> mtime when first seen: never rewritten
    resumed: list[tuple[str, int, int]] = []  # (checkpoint, step at the kill, index of the next step)
    survived = []
    for name, when, after in points:
        hit, _ = run_until(config, out, watch, when)
        assert hit and after(watch), f"kill point missed: {name} (the run was past it when killed)"
        for f in watch.cells():  # every written cell is complete, loadable, and the reference's
            cell = Cell.model_validate_json(f.read_text()).model_dump(mode="json", by_alias=True)
            assert stable(cell) == ref_cells[f.stem], f"{name}: {f.name}"
            np.load(f.with_suffix(".npz"))
            finished.setdefault(f.name, f.stat().st_mtime_ns)
        for cell, steps in watch.steps.items():
            if steps[-1] < total:
                resumed.append((cell, steps[-1], len(steps)))
        survived.append(name)

    # a kill in the middle of an atomic write leaves a temporary file: never read, cleaned up
    (out / "cells" / f".{CLS}.json.x1y2z3.tmp").write_text('{"id": "trunc')
    (out / "checkpoints" / f".{CLS}.pt.a1b2c3.tmp").write_bytes(b"\x80\x02trunc")
    hit, code = run_until(config, out, watch, None)
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert stable(result) == stable(reference)
    assert not list(out.rglob("*.tmp"))
    for f, mtime in finished.items():
        assert (out / "cells" / f).stat().st_mtime_ns == mtime, f"{f} was recomputed"
    for cell, step, nxt in resumed:  # continued from its checkpoint, not from the first epoch
        assert watch.steps[cell][nxt:] and min(watch.steps[cell][nxt:]) > step, (cell, watch.steps[cell])
    cells = {c["id"]: c for c in result["cells"]}
    assert cells[SEG]["train"]["resumed_from_step"] == total  # killed during ablations: not retrained
    assert {c[0] for c in resumed} == {SEG, CLS} and len(survived) == len(points) == 6
    print(f"\nkill points survived: {len(survived)}/{len(points)}: " + "; ".join(survived))


TINY = """
name: tiny
seeds: [0]
tasks:
  cls: {name: synthetic_shapes, target: image, n_train: 32, n_test: 16, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 1, batch_size: 16}
ablations:
  - {name: block_lesion}
bootstrap: 100
"""


def test_changed_config_is_refused_and_restart_starts_over(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    run = ["run", str(cfg), "--out", str(out), "--quiet"]
    assert main(run) == 0
    first = json.loads((out / "results.json").read_text())
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    assert main([*run, "--set", "seeds=[1]", "--set", "train.lr=0.05"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a run of a different config" in err, err
    assert "seeds: [0] -> [1]" in err and "train.lr: 0.1 -> 0.05" in err and "--restart" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps  # untouched

    assert main(run) == 0  # same config: everything is already done, nothing is retrained
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == \
        {n: t for n, t in stamps.items() if (out / "cells" / n).exists()}
    # every invocation is kept, so the wall time of a resumed study is their sum, not the last one's
    n_cells = len(first["cells"])
    assert [i["cells_computed"] for i in first["invocations"]] == [n_cells]
    again = json.loads((out / "results.json").read_text())["invocations"]
    assert [i["cells_computed"] for i in again] == [n_cells, 0] and again[0] == first["invocations"][0]

    # a folder written before a field existed (here class_weight_cap, read as its default None) is the same
    # study: resumed, nothing retrained; the same edit with a non-default value would be a real difference
    resolved = out / "config.resolved.yaml"
    text = resolved.read_text()
    assert "class_weight_cap: null\n" in text
    resolved.write_text(text.replace("  class_weight_cap: null\n", ""))
    assert main(run) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == \
        {n: t for n, t in stamps.items() if (out / "cells" / n).exists()}
    resolved.write_text(text.replace("class_weight_cap: null", "class_weight_cap: 3.0"))
    assert main(run) == 2 and "train.class_weight_cap: 3.0 -> None" in capsys.readouterr().err

    assert main([*run, "--restart"]) == 0  # starts over: every cell recomputed, the same numbers
    assert [i["cells_computed"] for i in json.loads((out / "results.json").read_text())["invocations"]] == [n_cells]
    again = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert again and all(again[n] != stamps[n] for n in again)
    assert stable(json.loads((out / "results.json").read_text())) == stable(first)

    assert main([*run, "--restart", "--set", "seeds=[1]"]) == 0  # a new config, explicitly
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == ["cls__res__baseline__s1.json"]
    assert "seeds:\n- 1\n" in (out / "config.resolved.yaml").read_text()
