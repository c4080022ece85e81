"""The README's plugin examples are real files that run: a residual U-Net and a two-kind task plugin.

docs/examples/residual_unet.py and docs/examples/stripes_task.py are shown verbatim in the README (checked
here), run in a small study, and checked with the shipped conformance suite from outside the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.data import TaskInfo
from bench.flow import identity_flow
from bench.registry import ARCHITECTURES, TASKS, load_plugin
from tests.helpers import run_study

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
UNET, TASK = EXAMPLES / "residual_unet.py", EXAMPLES / "stripes_task.py"


@pytest.fixture(scope="module", autouse=True)
def plugins():
    for path in (UNET, TASK):
        load_plugin(str(path))
        load_plugin(str(path))  # a second import of the same file (--plugin and plugins:) is a no-op


@pytest.mark.parametrize("path", [UNET, TASK], ids=lambda p: p.name)
def test_readme_shows_the_tested_file_verbatim(path):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert path.read_text() in blocks, f"README's code block for {path.name} differs from the file; paste it again"
    assert f"docs/examples/{path.name}" in readme


def test_unet_declares_levels_and_channels():
    model = ARCHITECTURES.get("residual_unet")(TaskInfo("segmentation", 3, ignore_index=255), depth=2, width=4)
    flow = identity_flow(model)
    assert [(s.stage, s.channels, s.kind) for s in sorted(flow.skips, key=lambda s: s.stage)] == [
        (0, 4, "concat"), (1, 8, "concat")]
    assert len(flow.blocks) == 6 and sum(b.shortcut == "projection" for b in flow.blocks) == 2
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)


def test_task_gives_both_kinds_from_the_same_images():
    cls, seg = TASKS.get("stripes")(kind="classification", n_train=8), TASKS.get("stripes")(kind="segmentation",
                                                                                            n_train=8)
    assert torch.equal(cls.train.images, seg.train.images)  # data_seed, not the study seed, fixes the data
    assert cls.train.targets().shape == (8,) and seg.train.targets().shape == (8, 16, 16)
    x, y = next(iter(seg.test.batches(4, train=False)))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1.0 and y.shape == (4, 16, 16)


STUDY = f"""
plugins: [{UNET}, {TASK}]
seeds: [0]
tasks:
  stripes_seg: {{name: stripes, kind: segmentation, n_train: 64, n_test: 32}}
  stripes_cls: {{name: stripes, kind: classification, n_train: 64, n_test: 32}}
architectures:
  runet: {{name: residual_unet, depth: 2, width: 4}}
train: {{epochs: 1, batch_size: 32}}
ablations:
  - {{name: block_lesion}}
  - {{name: skip_lesion}}
bootstrap: 100
"""


def test_examples_run_in_a_study(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(STUDY)
    res = run_study(config, tmp_path / "run")
    cells = {c["id"]: c for c in res["cells"]}
    assert set(cells) == {"stripes_seg__runet__baseline__s0", "stripes_cls__runet__baseline__s0"}
    assert all(c["status"] == "ok" for c in cells.values())
    assert cells["stripes_seg__runet__baseline__s0"]["ablations"]["skip_lesion"]["records"]


def test_conformance_runs_from_outside_the_repository_with_parameters(tmp_path):
    """What a plugin author types in their own project: no checkout of bench, parameters given."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pytest_run = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--pyargs", "bench.conformance",
         "--bench-plugin", str(UNET), "--bench-arch", "residual_unet", "--bench-params", '{"depth": 2, "width": 4}'],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert pytest_run.returncode == 0, pytest_run.stdout[-3000:]
    assert "test_reordering_changes_the_output_and_is_undone[residual_unet] PASSED" in pytest_run.stdout
    assert "9 passed" in pytest_run.stdout
    check = subprocess.run([sys.executable, "-m", "bench", "check", "residual_unet", "--set", "depth=1",
                            "--plugin", str(UNET), "--", "-q", "-k", "forward"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.returncode == 0 and "2 passed" in check.stdout, check.stdout[-2000:] + check.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "bench", "check", "residual_unet", "--set", "dept=1",
                          "--plugin", str(UNET)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "did you mean: depth" in bad.stderr
