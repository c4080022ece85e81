"""A plugin in a separate pip-installed package is listed, validated and run, with no edit to bench."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parents[1]  # tests/
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

UNPUBLISHED = """
from bench.registry import ARCHITECTURES
from bench_plugin_example import tiny_resnet

ARCHITECTURES.register("my_net")(tiny_resnet)
"""


@pytest.mark.slow
def test_pip_installed_plugin_is_listed_validated_and_run(tmp_path):
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(HERE / "plugin_example", source)  # setuptools builds in place: keep the repo clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}

    def bench(*args):
        return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)

    listed = bench("list", "architectures")
    assert listed.returncode == 0 and "tiny_resnet" in listed.stdout
    assert "Tiny residual net from a pip-installed plugin" in listed.stdout
    line = next(row for row in listed.stdout.splitlines() if "tiny_resnet" in row)
    assert "natural for classification" in line
    config = tmp_path / "plugin.yaml"
    config.write_text(CONFIG)
    assert bench("validate", str(config)).returncode == 0
    run = bench("run", str(config), "--out", str(tmp_path / "run"), "--quiet")
    assert run.returncode == 0, run.stderr
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    cells = {c["id"]: c for c in res["cells"]}
    assert set(cells) == {"seg__tiny__baseline__s0", "seg__tiny__no_identity__s0"}
    assert len(cells["seg__tiny__baseline__s0"]["ablations"]["block_lesion"]["records"]) == 4
    # the documented check, for the installed plugin and for an unpublished file given with --plugin
    unpublished = tmp_path / "my_net.py"
    unpublished.write_text(UNPUBLISHED)
    conformance = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                                  "tests/bench/test_conformance.py", "--arch", "tiny_resnet", "--arch", "my_net",
                                  "--plugin", str(unpublished)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert conformance.returncode == 0, conformance.stdout[-2000:]
    for test in ("test_every_edit_applies_and_is_undone_bit_exactly[tiny_resnet-segmentation]",
                 "test_reordering_changes_the_output_and_is_undone[tiny_resnet]",
                 "test_forward_backward[my_net-classification]"):
        assert f"{test} PASSED" in conformance.stdout
