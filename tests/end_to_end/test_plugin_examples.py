"""The README's plugin examples are real files that run: a residual U-Net, a two-kind task plugin and a
test-time ablation.

docs/examples/residual_unet.py, docs/examples/stripes_task.py and docs/examples/my_ablation.py are shown
verbatim in the README (checked here) and run in small studies; the U-Net is also checked with the shipped
conformance suite from outside the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.conformance import one_torch_thread
from bench.data import TaskInfo
from bench.flow import identity_flow
from bench.registry import ABLATIONS, ARCHITECTURES, TASKS, load_plugin
from tests.helpers import run_study

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
UNET, TASK, ABLATION = EXAMPLES / "residual_unet.py", EXAMPLES / "stripes_task.py", EXAMPLES / "my_ablation.py"


@pytest.fixture(scope="module", autouse=True)
def plugins():
    for path in (UNET, TASK, ABLATION):
        load_plugin(str(path))
        load_plugin(str(path))  # a second import of the same file (--plugin and plugins:) is a no-op


@pytest.mark.parametrize("path", [UNET, TASK, ABLATION], ids=lambda p: p.name)
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


@pytest.mark.slow  # 15 s: the default suite is at its 600 s budget
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


ABLATION_STUDY = """
seeds: [0]
tasks:
  cls: {name: synthetic_shapes, target: image, n_train: 96, n_test: 48, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
  plain: {name: cifar_plain, depth: 8, width: 4}
train: {epochs: 1, batch_size: 32}
ablations:
  - {name: branch_scale, factors: [0.0, 1.0]}
bootstrap: 100
"""


def test_ablation_example_runs_from_the_command_line(tmp_path):
    """``bench run --plugin docs/examples/my_ablation.py``: typed records, the declaration in results.json,
    a plain net (no identity beside its branches) not applicable, a section in report.md."""
    (tmp_path / "study.yaml").write_text(ABLATION_STUDY)
    with one_torch_thread():
        assert main(["run", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "run"), "--quiet",
                     "--plugin", str(ABLATION)]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["ablations"]["branch_scale"] == {"version": 1, "phase": "test", "removes": "branch",
                                                "measure": "dependence", "reads": "model", "family": "ensemble",
                                                "higher_is_better": False}
    cells = {c["architecture"]: c for c in res["cells"]}
    out = cells["res"]["ablations"]["branch_scale"]
    assert [r["key"] for r in out["records"]] == [{"factor": 0.0}, {"factor": 1.0}]
    intact = out["records"][1]
    assert intact["dependence"] == 0.0 and intact["delta_primary"] == 0.0  # factor 1: the model as trained
    assert out["summary"]["blocks"] == 3 and out["summary"]["dependence"] == pytest.approx(
        out["records"][0]["dependence"] / 2, abs=1e-6)
    assert "branch_scale" not in cells["plain"]["ablations"]
    assert "no residual block" in cells["plain"]["not_applicable"]["branch_scale"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## branch_scale\n\nScale every residual branch by each factor at test time" in report
    assert ABLATIONS.get("branch_scale").Record.__name__ == "BranchScaleRecord"
