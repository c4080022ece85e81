"""Pre-registration is recorded, not promised (issue 25, item 8): each invocation records the commit that last
changed the study's config (its analysis plan) in the repository holding it, and the report says whether that
change preceded the first cells, came after them (a new plan), or was never committed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.cli import main
from tests.helpers import one_torch_thread

STUDY = """# plan: {note}
name: prereg
seeds: [0]
tasks:
  seg: {{name: synthetic_shapes, target: pixel, n_train: 16, n_test: 8, image_size: 16, num_classes: 3}}
architectures:
  net: {{name: cifar_resnet, depth: 8, width: 4}}
train: {{epochs: 1, batch_size: 8}}
ablations:
  - {{name: block_lesion}}
bootstrap: 100
"""

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def run(config: Path, out: Path) -> dict:
    with one_torch_thread():
        assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "study-repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "study.yaml").write_text(STUDY.format(note="first"))
    git(repo, "add", "study.yaml")
    git(repo, "commit", "-q", "-m", "plan")
    return repo


def test_a_plan_committed_before_its_cells_is_recorded_and_a_later_change_is_called_a_new_plan(repo, tmp_path):
    out = tmp_path / "run"
    first = run(repo / "study.yaml", out)
    plan = first["invocations"][-1]["plan"]
    committed = git(repo, "rev-parse", "HEAD")
    assert (plan["commit"], plan["dirty"], plan["changed_after_cells"]) == (committed, False, False)
    assert "before the first cells were computed" in (out / "report.md").read_text()

    (repo / "study.yaml").write_text(STUDY.format(note="edited after the cells"))  # same study, another plan text
    git(repo, "commit", "-q", "-am", "plan edited")
    again = run(repo / "study.yaml", out)
    assert again["invocations"][-1]["cells_computed"] == 0
    plan = again["invocations"][-1]["plan"]
    assert plan["first_cells_head"] == committed and plan["changed_after_cells"] is True
    assert "the plan changed after cells existed" in (out / "report.md").read_text()


def test_cells_computed_from_an_uncommitted_plan_are_not_pre_registered(repo, tmp_path):
    (repo / "study.yaml").write_text(STUDY.format(note="not committed"))
    run(repo / "study.yaml", tmp_path / "run")
    assert "**not pre-registered**" in (tmp_path / "run" / "report.md").read_text()


def test_a_config_outside_git_says_so(tmp_path):
    config = tmp_path / "loose.yaml"
    config.write_text(STUDY.format(note="loose"))
    results = run(config, tmp_path / "run")
    assert results["invocations"][-1]["plan"] is None
    assert "Pre-registration: not recorded" in (tmp_path / "run" / "report.md").read_text()


def test_an_uncommitted_change_after_the_cells_is_flagged_even_when_nothing_trains(repo, tmp_path):
    """Found by review: the plan edited and left uncommitted, then the folder re-assembled (no cell trained)."""
    out = tmp_path / "run"
    run(repo / "study.yaml", out)
    (repo / "study.yaml").write_text(STUDY.format(note="edited, not committed"))
    again = run(repo / "study.yaml", out)
    assert again["invocations"][-1]["cells_computed"] == 0 and again["invocations"][-1]["plan"]["dirty"] is True
    assert "the plan changed after cells existed" in (out / "report.md").read_text()


def test_a_reassembly_from_the_run_folders_own_config_keeps_the_pre_registration(repo, tmp_path):
    """Found by review: re-assembling a committed study from its folder's config.resolved.yaml (committed with the
    cells, so 'changed after' them) called a pre-registered plan a new one. That file is the recorded plan (a run on
    the folder under another plan is refused), so the invocations that computed the cells decide."""
    out = repo / "reports" / "prereg"
    run(repo / "study.yaml", out)
    git(repo, "add", "-f", "reports")
    git(repo, "commit", "-q", "-m", "the cells and the folder's config.resolved.yaml")
    again = run(out / "config.resolved.yaml", out)
    plan = again["invocations"][-1]["plan"]
    assert again["invocations"][-1]["cells_computed"] == 0 and plan["changed_after_cells"] is True  # as recorded
    report = (out / "report.md").read_text()
    assert "before the first cells were computed" in report and "the plan changed after cells existed" not in report
    assert "Re-assembled since from the run folder's own `config.resolved.yaml` (1 invocation(s)" in report
