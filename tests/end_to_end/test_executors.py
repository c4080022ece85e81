"""Every executor runs the same cell function: processes (2 workers), Ray (a local 2-CPU instance) and
Slurm (submitit's local executor: the same pickled jobs, no cluster) give cells equal to ``local``'s,
bit for bit on the CPU (wall-clock fields and provenance aside). A worker killed mid-cell loses only
its cell (reported, the others finish); the same command then resumes to the same results. A second
``bench run`` on a folder in use exits 2 with one line naming the other process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench
from bench.cli import main
from tests.helpers import run_study, without

ROOT = Path(__file__).resolve().parents[2]
STUDY = """
name: executors
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 32, n_test: 16, image_size: 16, num_classes: 3}
  cls: {name: synthetic_shapes, target: image, n_train: 32, n_test: 16, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 1, batch_size: 16, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
  - {name: skip_removal}
verdict: {dense: seg, global: cls}
bootstrap: 100
"""
VOLATILE = {"wall_s", "images_per_s", "timings", "resumed_from_step", "provenance", "computed_with", "invocations"}


def stable(obj):
    return without(obj, VOLATILE)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("executors") / "study.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def reference(config) -> dict:
    """The local executor in this process, one torch thread (what each worker gets on 2 cores)."""
    return run_study(config, config.parent / "local")


def run_with(config: Path, out: Path, executor: str, **options) -> dict:
    """The study through the library API with another executor (each worker gets its share of the CPUs)."""
    bench.run(config, out=out, executor=executor, **options)
    return json.loads((out / "results.json").read_text())


def test_processes_equal_local(config, reference, tmp_path):
    res = run_with(config, tmp_path / "run", "processes", workers=2)
    assert stable(res) == stable(reference)


@pytest.mark.slow  # a transport's end-to-end run (10-15 s): the default suite is at its 600 s budget
def test_ray_equals_local(config, reference, tmp_path):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'identity-bench[ray]')")
    res = run_with(config, tmp_path / "run", "ray", workers=2)
    assert stable(res) == stable(reference)


@pytest.mark.slow  # a transport's end-to-end run (10-15 s): the default suite is at its 600 s budget
def test_slurm_through_submitit_local_equals_local(config, reference, tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed (pip install 'identity-bench[slurm]')")
    res = run_with(config, tmp_path / "run", "slurm", set_options=[  # `executor` names the API's own keyword
        "executor.slurm.cluster=local", "executor.slurm.cpus_per_task=1", "executor.slurm.array_parallelism=2"])
    assert stable(res) == stable(reference)
    assert (tmp_path / "run" / ".slurm").is_dir()  # submitit's jobs and logs live in bench's own sub-folder


def test_executor_from_the_config_and_the_cli_wins(config, tmp_path, capsys):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(STUDY + "executor: {kind: ray, ray: {address: 'ray://nowhere.invalid:1'}}\n")
    assert main(["validate", str(cfg)]) == 0
    # the config says ray; the command line says local and wins (nothing about Ray is touched)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--quiet", "--executor", "local",
                 "--set", "tasks={cls: {name: synthetic_shapes, target: image, n_train: 16, n_test: 8, image_size: 16}}",
                 "--set", "verdict=null", "--set", "ablations=[]"]) == 0
    assert "\nexecutor:" not in (tmp_path / "run" / "config.resolved.yaml").read_text()  # not part of the results


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _workers(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmd or b"spawn_main" in cmd:
            out.append(child)
    return out


# two cells (baseline, no_identity), both running at once on the 2 workers; long enough to be killed mid-cell
KILLED = (STUDY.replace("n_train: 32", "n_train: 128").replace("epochs: 1", "epochs: 3")
          .replace("verdict: {dense: seg, global: cls}\n", "")
          .replace("  cls: {name: synthetic_shapes, target: image, n_train: 128, n_test: 16, image_size: 16, num_classes: 3}\n", ""))


@pytest.mark.slow  # 33 s, the default suite's slowest test: the suite stood at 595 s of its 600 s budget
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds worker processes through /proc (Linux)")
def test_a_worker_killed_mid_cell_loses_only_its_cell_and_a_rerun_resumes(tmp_path):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(KILLED)
    reference = run_study(cfg, tmp_path / "local")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench", "run", str(cfg), "--out", str(out), "--quiet",
           "--executor", "processes", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    victim = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = list((out / "checkpoints").glob("*.pt")) if (out / "checkpoints").is_dir() else []
        if ckpts:  # a cell has finished an epoch and is still training: kill a worker now
            workers = _workers(proc.pid)
            if workers:
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=240)
    assert victim is not None, f"no worker to kill; the run ended first: {err}"
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "its worker died (killed by signal 9)" in err and "Traceback" not in err, err
    assert "run the same command" in err
    finished = sorted(p.name for p in (out / "cells").glob("*.json"))
    assert len(finished) == 1  # the other cell was written; the killed one was not
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr
    assert stable(json.loads((out / "results.json").read_text())) == stable(reference)


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from bench.rundir import RunDir; r = RunDir(sys.argv[1]); r.claim(''); r.lock(); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("extra", [[], ["--restart"]], ids=["run", "restart"])
def test_a_second_run_on_a_locked_folder_exits_2_naming_the_other(config, tmp_path, capsys, extra):
    out = tmp_path / "run"
    holder = _hold_lock(out)
    try:
        (out / "notes.txt").write_text("mine")
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".bench.lock"}
        assert main(["run", str(config), "--out", str(out), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is in use by bench pid {holder.pid}" in err, err
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".bench.lock"} == before
    finally:
        holder.kill()
        holder.wait()


RAISING = '''
"""A test-time ablation that fails on the classification task's cells only."""
from typing import ClassVar

from bench.ablations.base import Ablation, AblationResult
from bench.registry import ABLATIONS


@ABLATIONS.register("exec_fragile")
class Fragile(Ablation):
    """Raises on classification."""

    removes: ClassVar = "branch"

    def run(self, ctx):
        if ctx.info.kind == "classification":
            raise RuntimeError("boom on classification")
        return AblationResult(records=[], summary=self.Summary(dependence=None))
'''


def test_a_failing_cell_is_reported_and_the_others_finish(tmp_path, capsys):
    """Through the process pool: the plugin is shipped to the workers; the failure is one line."""
    plugin = tmp_path / "fragile.py"
    plugin.write_text(RAISING)
    cfg = tmp_path / "study.yaml"
    cfg.write_text(STUDY.replace("  - {name: skip_removal}\n", "  - {name: exec_fragile}\n")
                   .replace("verdict: {dense: seg, global: cls}\n", "plugins: [fragile.py]\n"))
    out = tmp_path / "run"
    from tests.end_to_end.test_failure_corpus import fresh_registries

    with fresh_registries():
        code = main(["run", str(cfg), "--out", str(out), "--quiet", "--executor", "processes", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "1 of 2 cell(s) failed and were not written" in err, err
    assert "failed: RuntimeError: boom on classification" in err and "first cls__res__baseline__s0" in err
    assert "ablation plugin 'exec_fragile'" in err and "Traceback" not in err  # named as the plugin's failure
    assert sorted(p.name for p in (out / "cells").glob("*.json")) == ["seg__res__baseline__s0.json"]


def test_a_pool_worker_may_start_dataloader_workers(tmp_path):
    """File-backed tasks decode in DataLoader worker processes; a pool worker must be allowed children."""
    from tests.fixtures_data import write_image_folder

    root = write_image_folder(tmp_path / "folder", per_class=4, size=20)
    config = tmp_path / "files.yaml"
    config.write_text(f"""
name: files
seeds: [0, 1]
tasks:
  files: {{name: image_folder, root: {str(root)!r}, image_size: 16, in_memory: false, workers: 1}}
architectures:
  res: {{name: cifar_resnet, depth: 8, width: 4}}
train: {{epochs: 1, batch_size: 6, optimizer: adamw, lr: 0.01}}
ablations: [{{name: block_lesion}}]
bootstrap: 100
""")
    pool = run_with(config, tmp_path / "pool", "processes", workers=2)
    assert [c["status"] for c in pool["cells"]] == ["ok", "ok"], [c.get("error") for c in pool["cells"]]
    assert stable(pool) == stable(run_study(config, tmp_path / "local"))


@pytest.mark.slow  # 12.5 s: the default suite is at its 600 s budget
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds worker processes through /proc (Linux)")
def test_ctrl_c_on_a_pool_with_many_queued_cells_exits(tmp_path):
    """Interrupted with most cells still queued (more pickled jobs than a pipe holds), the driver exits:
    the queue's feeder thread must not wait at exit for readers that are gone."""
    cfg = tmp_path / "study.yaml"
    cfg.write_text(KILLED.replace("seeds: [0]", f"seeds: {list(range(30))}"))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(cfg), "--out", str(out), "--quiet",
                             "--executor", "processes", "--workers", "2"], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            # Ctrl-C as a terminal delivers it, whatever this test process does with SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (out / "checkpoints").is_dir():
        time.sleep(0.05)  # a worker is training its first cell: the driver hands out cells
    assert proc.poll() is None and not (out / "results.json").exists(), "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the driver did not exit within 60 s of Ctrl-C")
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err


HALF_BRANCH = '''
"""A train-time ablation whose variant uses an Edit class of its own (the plugin defines it)."""
from dataclasses import dataclass

from bench.ablations.base import TrainTimeAblation
from bench.flow import Edit
from bench.registry import ABLATIONS


@dataclass(frozen=True)
class HalfBranch(Edit):
    def branch(self, t):
        return 0.5 * t


@ABLATIONS.register("exec_half_branch")
class HalfBranches(TrainTimeAblation):
    """Trains with every residual branch halved."""

    removes = "branch"
    measure = "profile"

    def applicable(self, flow):
        return None if flow.residual_blocks else "no residual blocks"

    def variants(self, flow):
        return {"half_branches": {b.name: HalfBranch() for b in flow.residual_blocks}}
'''


def test_a_plugin_edit_class_travels_to_the_workers(tmp_path):
    """A job is plain data: a worker unpickles it before it imports the study's plugins, so a job must not carry
    an object whose class a plugin defines (a variant's edits are rebuilt from the plan in the worker)."""
    (tmp_path / "half_branch.py").write_text(HALF_BRANCH)
    cfg = tmp_path / "study.yaml"
    cfg.write_text(STUDY.replace("  - {name: skip_removal}\n", "  - {name: exec_half_branch}\n")
                   .replace("verdict: {dense: seg, global: cls}\n", "plugins: [half_branch.py]\n"))
    from tests.end_to_end.test_failure_corpus import fresh_registries

    with fresh_registries():
        res = run_with(cfg, tmp_path / "run", "processes", workers=2)
    assert {c["variant"] for c in res["cells"]} == {"baseline", "half_branches"}
    assert all(c["status"] == "ok" for c in res["cells"])
