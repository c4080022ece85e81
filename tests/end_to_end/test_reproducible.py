"""Reproducible on the CPU: the same config and seeds give identical results.json metrics and records,
in this process or a fresh one, and a cell's numbers depend only on its own seed (not on which cells
ran before it). GPU caveats: bench.train.deterministic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.train import deterministic
from tests.helpers import run_study, without

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
name: repro
seeds: [0, 1]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 48, n_test: 16, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 2, batch_size: 16, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
  - {name: multi_lesion, max_k: 2, samples: 2}
  - {name: skip_removal}
bootstrap: 100
"""
VOLATILE = {"wall_s", "images_per_s", "timings", "provenance", "invocations"}


def stable(obj):
    return without(obj, VOLATILE)


def test_same_config_same_results_in_this_and_a_fresh_process(tmp_path):
    config = tmp_path / "repro.yaml"
    config.write_text(CONFIG)
    a = run_study(config, tmp_path / "a")
    proc = subprocess.run([sys.executable, "-m", "bench", "run", str(config), "--out", str(tmp_path / "b"), "--quiet"],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert stable(a) == stable(b)  # every metric, record, interval and the verdict, bit for bit
    cells = {c["id"]: c for c in a["cells"]}
    assert len(cells) == 4 and len(a["comparisons"]) == 2
    s0, s1 = cells["seg__res__baseline__s0"], cells["seg__res__baseline__s1"]
    assert s0["train"]["final_loss"] != s1["train"]["final_loss"]  # the seed matters: equality is not vacuous
    assert s0["ablations"]["multi_lesion"]["records"]

    c = run_study(config, tmp_path / "c", "seeds=[1]")  # seed 1 alone: the same cells as seed 1 after seed 0
    assert [stable(x) for x in c["cells"]] == [stable(x) for x in a["cells"] if x["seed"] == 1]


def test_deterministic_switches_on_for_a_study_and_back_after():
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic():
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()  # no deterministic kernel: warn, go on
            assert not torch.backends.cudnn.benchmark
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.backends.cudnn.benchmark = before[1]
    assert torch.are_deterministic_algorithms_enabled() == before[0]
