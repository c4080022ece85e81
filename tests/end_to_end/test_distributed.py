"""Training runs unchanged under torchrun: 2 CPU processes (gloo) match 1 process within tolerance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
seeds: [0]
tasks:
  cls: {name: synthetic_shapes, target: image, n_train: 256, n_test: 128, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 8}
train: {epochs: 3, batch_size: BS, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
bootstrap: 100
"""


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(CONFIG.replace("BS", "32"))
    two.write_text(CONFIG.replace("BS", "16"))  # batch_size is per process: 2 x 16 = the same global batch
    assert main(["run", str(one), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29571",
                           "-m", "bench", "run", str(two), "--out", str(tmp_path / "b"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((tmp_path / "a" / "results.json").read_text())["cells"][0]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["cells"][0]
    assert b["train"]["steps"] == a["train"]["steps"] == 24  # same number of global steps
    # same batches, same averaged gradients; only BatchNorm batch statistics differ (per process)
    assert abs(a["metrics"]["accuracy"] - b["metrics"]["accuracy"]) <= 0.08, (a["metrics"], b["metrics"])
    assert abs(a["train"]["final_loss"] - b["train"]["final_loss"]) <= 0.25
    assert len(b["ablations"]["block_lesion"]["records"]) == 3


def test_the_process_group_is_destroyed_before_main_returns(tmp_path, monkeypatch):
    """A gloo group left to interpreter shutdown can abort a finished rank with SIGABRT (pytorch/pytorch#190489);
    this is how CI's torchrun test failed once. main must destroy the group it joined, whatever the command did."""
    import torch.distributed as dist

    import bench.cli as cli

    def join_a_group_of_one():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    monkeypatch.setattr(cli, "init_distributed", join_a_group_of_one)
    config = tmp_path / "bad.yaml"
    config.write_text("seeds: [0]\n")  # invalid: the command fails, and the group must still be left
    assert main(["validate", str(config)]) == 2
    assert not dist.is_initialized()
