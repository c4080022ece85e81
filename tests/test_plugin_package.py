"""A plugin in a separate pip-installed package is listed, validated and run, with no edit to bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent

CONFIG = """
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 48, n_test: 24, image_size: 16}
architectures:
  tiny: {name: tiny_resnet, width: 4}
train: {epochs: 1, batch_size: 16}
ablations:
  - {name: block_lesion}
  - {name: skip_removal}
bootstrap: 100
"""


@pytest.mark.slow
def test_pip_installed_plugin_is_listed_validated_and_run(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(HERE / "plugin_example")], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}

    def bench(*args):
        return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)

    listed = bench("list", "architectures")
    assert listed.returncode == 0 and "tiny_resnet" in listed.stdout
    assert "Tiny residual net from a pip-installed plugin" in listed.stdout
    config = tmp_path / "plugin.yaml"
    config.write_text(CONFIG)
    assert bench("validate", str(config)).returncode == 0
    run = bench("run", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert run.returncode == 0, run.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    cells = {c["id"]: c for c in res["cells"]}
    assert set(cells) == {"seg__tiny__baseline__s0", "seg__tiny__no_identity__s0"}
    assert len(cells["seg__tiny__baseline__s0"]["ablations"]["block_lesion"]["records"]) == 4
    conformance = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_conformance.py", "--arch",
                                  "tiny_resnet", "-k", "not parameter_counts and not adapters", "-p",
                                  "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert conformance.returncode == 0, conformance.stdout[-2000:]
