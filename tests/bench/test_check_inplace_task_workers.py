"""Issue 28 review: ``bench check`` of an architecture with an in-place operation names the README's in-place rule
(as ``bench run`` does); ``bench check TASK`` names the task when its loader refuses a label; DataLoader
``workers`` above the cores are capped for every file-backed task, with one note naming it, and the count used
is what the run records."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from PIL import Image

import bench.data as data
from bench.cell import build_task
from bench.cli import main
from bench.plan import Plan
from tests.fixtures_data import write_seg_folder

INPLACE = textwrap.dedent('''
    import torch
    from torch import nn
    from bench.data import TaskInfo
    from bench.flow import ResidualBlock
    from bench.models.heads import make_head
    from bench.registry import ARCHITECTURES


    class Net(nn.Module):
        def __init__(self, task: TaskInfo, width: int):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(task.in_channels, width, 3, padding=1), nn.ReLU())
            self.block = ResidualBlock(nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                                     nn.Conv2d(width, width, 3, padding=1)),
                                       nn.Identity(), post=nn.ReLU(inplace=True), same_shape=True, stage=0)
            self.head = make_head(task, width)

        def forward(self, x):
            return self.head(self.block(self.stem(x)), x.shape[-2:])


    @ARCHITECTURES.register("inplace_net")
    def inplace_net(task: TaskInfo, width: int = 4) -> Net:
        """One residual block whose post() is an in-place ReLU."""
        return Net(task, width)
''')


def test_check_of_an_architecture_with_an_in_place_op_names_the_readme_rule(tmp_path, capsys):
    plugin = tmp_path / "inplace_net.py"
    plugin.write_text(INPLACE)
    assert main(["--plugin", str(plugin), "check", "inplace_net"]) != 0
    out = capsys.readouterr().out
    assert "an in-place operation changed a tensor autograd needs" in out
    assert "README, 'Register your own architecture', In-place operations" in out and "nn.ReLU()" in out
    assert "During handling of the above exception" not in out and "RuntimeError" not in out


def test_check_task_names_the_task_when_its_loader_refuses_a_mask(tmp_path, capsys):
    root = write_seg_folder(tmp_path / "seg", splits=("train", "val"))
    Image.fromarray(np.full((32, 32), 7, dtype=np.uint8), mode="L").save(root / "train" / "masks" / "1.png")
    assert main(["check", "segmentation_folder", "--set", f"root={root}", "--set", "num_classes=3",
                 "--set", "workers=0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: task segmentation_folder: "), err
    assert "masks/1.png: mask value 7 is outside 0..2" in err[0]  # the loader's own message, kept


def test_workers_above_the_cores_are_capped_for_every_file_backed_task_with_one_note(tmp_path, monkeypatch, capsys):
    root = write_seg_folder(tmp_path / "seg", splits=("train", "val"))
    config = tmp_path / "study.yaml"
    config.write_text(textwrap.dedent(f"""
        name: workers
        seeds: [0]
        device: cpu
        tasks:
          seg: {{name: segmentation_folder, root: {root}, num_classes: 3, crop_size: 32, workers: 8}}
          cls: {{name: classify_from_masks, source: {{name: segmentation_folder, root: {root}, num_classes: 3,
                 background_index: 0, crop_size: 32, workers: 8}}}}
        architectures:
          unet: {{name: unet, depth: 2, width: 4}}
        train: {{epochs: 1, batch_size: 4}}
        ablations:
          - {{name: skip_removal}}
    """))
    monkeypatch.setattr(data, "cpu_cores", lambda: 2)
    monkeypatch.setattr(data, "_CAPPED", set())
    plan = Plan.build(config)
    capsys.readouterr()
    tasks = {alias: build_task(plan, alias) for alias in ("seg", "cls", "seg")}
    for task in tasks.values():
        assert task.train.workers == task.test.workers == task.provenance["workers"] == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"note: task {alias}: workers 8 > 2 CPU core(s) here; using 2" for alias in ("seg", "cls")], err
    monkeypatch.setattr(data, "cpu_cores", lambda: 16)
    assert build_task(plan, "seg").train.workers == 8  # within the cores: as configured, no note
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("cores", [1])
def test_a_task_held_in_memory_has_no_workers_to_cap(cores, monkeypatch):
    import torch

    from bench.data import Task, TaskInfo, TensorSplit, cap_workers

    split = TensorSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), (0.5,) * 3,
                        (0.5,) * 3)
    monkeypatch.setattr(data, "cpu_cores", lambda: cores)
    task = Task(TaskInfo("classification", 2, 3, (8, 8)), split, split)
    assert cap_workers(task, "mem") is None and "workers" not in task.provenance


def test_validate_says_the_sbd_requirement_once(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "configs" / "unet_voc.yaml"
    monkeypatch.chdir(tmp_path)  # no data here: validate says what a run downloads and what to add by hand
    assert main(["validate", str(config), "--set", "tasks.voc.train_split=train_aug"]) == 0
    out = capsys.readouterr().out
    assert out.count("SegmentationClassAug/ and ImageSets/Segmentation/train_aug.txt (SBD, not downloaded") == 1, out
    assert "a run downloads" in out and "for train_split: train_aug also add" in out


def test_check_task_caps_workers_with_one_note_and_no_torch_warning(tmp_path, monkeypatch, capsys):
    import warnings

    root = write_seg_folder(tmp_path / "seg", splits=("train", "val"))
    monkeypatch.setattr(data, "cpu_cores", lambda: 2)
    monkeypatch.setattr(data, "_CAPPED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["check", "segmentation_folder", "--set", f"root={root}", "--set", "num_classes=3",
                     "--set", "workers=8"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["note: task segmentation_folder: workers 8 > 2 CPU core(s) here; using 2"], err
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]


def test_a_process_pool_shares_the_cores_one_note_from_the_driver(tmp_path, monkeypatch, capsys):
    """``executor: processes`` with 2 workers on 2 cores: 1 DataLoader worker per cell process (the driver's
    count, recorded in provenance.data_workers, is what each pool worker uses), said once by the driver."""
    import dataclasses
    import json

    import bench.cell as cell
    from bench.driver import Options, run_study
    from bench.executors import ProcessExecutor

    class InProcessPool(ProcessExecutor):
        """A pool of 2 whose 'workers' are this process, each cell loading its tasks afresh as a worker does."""

        def map(self, fn, jobs, events):
            for job in jobs:
                cell._TASKS.clear()
                data._CAPPED.clear()  # a fresh process has said no note yet
                events.started(job.unit.id)
                events.finished(fn(dataclasses.replace(job, driver="a pool worker"), None))

    used = []
    cap = cell.cap_workers
    monkeypatch.setattr(cell, "cap_workers", lambda *a, **k: used.append(cap(*a, **k)) or used[-1])
    root = write_seg_folder(tmp_path / "seg", splits=("train", "val"))
    config = tmp_path / "pool.yaml"
    config.write_text(textwrap.dedent(f"""
        name: pool
        seeds: [0]
        device: cpu
        tasks:
          seg: {{name: segmentation_folder, root: {root}, num_classes: 3, crop_size: 32, workers: 8}}
        architectures:
          unet: {{name: unet, depth: 2, width: 4}}
        train: {{epochs: 1, batch_size: 8}}
        ablations:
          - {{name: skip_removal}}
    """))
    monkeypatch.setattr(data, "cpu_cores", lambda: 2)
    monkeypatch.setattr(data, "_CAPPED", set())
    out = run_study(Plan.build(config), InProcessPool(2), Options(out=tmp_path / "run", show_progress=False))
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: task")]
    assert notes == ["note: task seg: workers 8 > 1 per cell process (2 CPU core(s) here, 2 processes); using 1"], notes
    assert used and set(used) == {1}, used  # the driver's tasks and each worker's
    assert json.loads((out / "results.json").read_text())["provenance"]["data_workers"] == {"seg": 1}


def test_readme_says_bench_check_is_the_in_place_check_and_bench_run_may_say_nothing():
    """The re-review found ``bench run`` with ``post=nn.ReLU(inplace=True)`` finishing rc 0 with no message: the
    README must not promise that a run fails on it."""
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    rule = readme[readme.index("**In-place operations.**"):]
    rule = rule[:rule.index("A complete package")]
    assert "`bench check NAME` is the check to run" in rule and "`bench run` does not check it" in rule
    assert "finishes with no message" in rule and "Breaking the rule fails in the backward pass" not in rule
