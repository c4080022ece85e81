"""Issue 28, items 4, 5 and 7: the VOC path a first user walks, `bench check TASK`, and the small items.

VOC data is generated in the exact official layout (tests/fixtures_data.write_voc) in tmp folders;
nothing is downloaded (urlopen is replaced by one that fails, as without network).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

import pytest
import torch

import bench.tasks.common as common
import bench.tasks.voc as voc_module
from bench.cli import main
from bench.conformance import build_task, task_problems
from bench.errors import BenchError
from bench.failures import translate
from bench.plan import Plan
from bench.registry import TASKS
from bench.tasks.common import md5sum
from bench.tasks.voc import voc2012
from tests.fixtures_data import write_voc

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "unet_voc.yaml"

PLUGIN = '''
import torch
from bench.data import Task, TaskInfo, TensorSplit
from bench.registry import TASKS


@TASKS.register("bad_labels")
def bad_labels(label: int = 7, n: int = 4) -> Task:
    """Segmentation whose first mask has one pixel labelled ``label`` (3 classes: 7 is out of range)."""
    x = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    m = torch.zeros(n, 8, 8, dtype=torch.int64)
    m[:, 2:6, 2:6] = torch.arange(n)[:, None, None] % 2 + 1
    m[0, 0, 0] = label
    info = TaskInfo("segmentation", 3, 3, (8, 8), ignore_index=255, background_index=0)
    return Task(info, TensorSplit(x, m, (0.5,) * 3, (0.25,) * 3, pad=0), TensorSplit(x, m, (0.5,) * 3, (0.25,) * 3))
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "bad_labels_task.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture
def offline(monkeypatch):
    def fail(*_, **__):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", fail)


# -- item 4: validate reports the data, a failed download says what to place where --------------------------


def test_validate_without_the_data_says_what_is_missing_and_what_a_run_downloads(tmp_path, monkeypatch, capsys, offline):
    monkeypatch.chdir(tmp_path)  # the config's root `data` resolves here, where there is none
    assert main(["validate", str(CONFIG)]) == 0  # data a run would download is not a validate failure
    out = capsys.readouterr().out
    data = tmp_path / "data"
    assert f"data voc: VOC 2012 missing: no VOCdevkit/VOC2012 (with JPEGImages/, SegmentationClass/ and " \
           f"ImageSets/Segmentation/) in {data}" in out, out
    assert f"a run downloads {voc_module.URL} (about 2 GB, MD5-checked) into {data}" in out
    assert f"place VOCtrainval_11-May-2012.tar as-is in {data}" in out
    assert "data voc_cls: the same files as its source voc2012 (VOC 2012 missing" in out
    assert "device: cpu" in out or "device: cuda" in out
    assert not data.exists()  # nothing downloaded, nothing created


def test_validate_with_the_data_in_the_official_layout_says_where_it_is(tmp_path, monkeypatch, capsys):
    voc = write_voc(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(CONFIG), "--set", f"tasks.voc.root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert f"data voc: VOC 2012 present at {voc}" in out
    assert "split train: 6 image(s) listed" in out and "split val: 4 image(s) listed" in out


def test_a_failed_download_says_what_to_place_where_and_that_the_run_resumes(tmp_path, offline):
    with pytest.raises(BenchError) as err:
        voc2012(root=str(tmp_path), download=True)
    text = str(err.value)
    assert f"download of {voc_module.URL} failed" in text
    assert f"place VOCtrainval_11-May-2012.tar as-is in {tmp_path}" in text
    assert f"{tmp_path / 'VOCdevkit' / 'VOC2012'} holds JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/" in text
    assert "run the same command again: it resumes" in text and "SBD" not in text
    with pytest.raises(BenchError, match=r"train_aug also add SegmentationClassAug/ and ImageSets/Segmentation/"):
        voc2012(root=str(tmp_path), download=True, train_split="train_aug")


def test_the_tar_placed_as_is_is_checked_extracted_and_used(tmp_path, monkeypatch, offline):
    made = tmp_path / "made"
    write_voc(made)
    root = tmp_path / "root"
    root.mkdir()
    tar = root / voc_module.TAR
    with tarfile.open(tar, "w") as t:  # the release's own layout: VOCdevkit/VOC2012/... at the top
        t.add(made / "VOCdevkit", arcname="VOCdevkit")
    monkeypatch.setattr(voc_module, "MD5", md5sum(tar))  # our tar stands in for the published one
    task = voc2012(root=str(root), download=True, workers=0)  # no network needed: the tar is there
    assert len(task.train) == 6 and len(task.test) == 4


def test_workers_above_the_cores_are_capped_with_one_note(tmp_path, monkeypatch, capsys):
    write_voc(tmp_path)
    monkeypatch.setattr(common, "cpu_cores", lambda: 2)
    monkeypatch.setattr(common, "_CAPPED", set())
    tasks = [voc2012(root=str(tmp_path), workers=8) for _ in range(2)]
    assert all(t.train.workers == 2 and t.test.workers == 2 and t.provenance["workers"] == 2 for t in tasks)
    err = capsys.readouterr().err
    assert err == "note: voc2012: workers 8 > 2 CPU core(s) here; using 2\n", err
    assert voc2012(root=str(tmp_path), workers=1).train.workers == 1


# -- item 5: bench check TASK ------------------------------------------------------------------------------


def test_check_names_the_task_and_the_out_of_range_label(plugin, capsys):
    assert main(["--plugin", str(plugin), "check", "bad_labels"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: task bad_labels: {split} label(s) 7 out of range (num_classes 3: 0..2 or the ignore index "
                   "255); fix the labels, or num_classes / ignore_index" for split in ("train", "test")], err
    assert main(["--plugin", str(plugin), "check", "bad_labels", "--set", "label=255"]) == 0  # the ignore index
    assert "task bad_labels (bad_labels): ok" in capsys.readouterr().out


def test_check_finds_empty_splits_shape_mismatches_and_inconsistent_classes(plugin):
    from bench.registry import load_plugin

    load_plugin(str(plugin))
    task, _ = build_task({"name": "bad_labels", "label": 1}, "test")
    assert task_problems("t", task) == []
    task.info = type(task.info)("segmentation", 3, 3, (8, 8), ignore_index=2, class_names=("a", "b"),
                                background_index=5)
    problems = task_problems("t", task)
    assert any("class_names has 2 names for num_classes 3" in p for p in problems), problems
    assert any("background_index 5 is not a class" in p for p in problems), problems
    assert any("ignore_index 2 is class 2" in p for p in problems), problems
    task, _ = build_task({"name": "bad_labels", "label": 1}, "test")
    task.test.labels = task.test.labels[:, :, :4]  # masks narrower than their images
    assert any("masks (2, 8, 4) do not match images (2, 3, 8, 8)" in p for p in task_problems("t", task))
    task.test.images, task.test.labels = task.test.images[:0], task.test.labels[:0]
    assert any("the test split is empty" in p for p in task_problems("t", task))


def test_check_of_a_twin_recomputes_its_labels_from_the_source_masks(plugin):
    from bench.registry import load_plugin

    load_plugin(str(plugin))
    spec = {"name": "classify_from_masks", "source": {"name": "bad_labels", "label": 1}}
    twin, params = build_task(spec, "test")
    assert task_problems("twin", twin, {"name": "classify_from_masks", **params}) == []
    twin.test.labels[1] = 0  # mask 1's dominant object is class 2: a mislabelled twin
    problems = task_problems("twin", twin, {"name": "classify_from_masks", **params})
    assert problems == ["task twin: 1 test label(s) differ from the dominant rule applied to the source's masks "
                        "(first: image 1, label 0, rule 2); derive each label from its own mask as documented "
                        "(python -m bench describe classify_from_masks)"], problems


def test_check_of_a_config_alias_on_the_real_voc_example(monkeypatch, capsys):
    sample = REPO.parent / "shared" / "data" / "voc-sample"
    if not sample.is_dir():
        pytest.skip(f"{sample}: the real VOC example is not here (../shared/data)")
    for alias, key in (("voc", ""), ("voc_cls", "source.")):
        code = main(["check", alias, "--config", str(CONFIG), "--set", f"{key}root={sample}",
                     "--set", f"{key}train_split=val", "--set", f"{key}workers=0"])
        assert code == 0, capsys.readouterr().err
        assert f"task {alias} (" in capsys.readouterr().out


def test_the_shipped_pytest_plugin_runs_the_task_check(plugin):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs",
                          "bench.conformance", "--bench-plugin", str(plugin), "--bench-task", "bad_labels"],
                         capture_output=True, text=True, env=env, cwd=plugin.parent, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "task bad_labels: train label(s) 7 out of range" in run.stdout
    assert "1 failed" in run.stdout and "deselected" in run.stdout  # the architecture checks are not run too


# -- item 7: small items -----------------------------------------------------------------------------------


def test_an_in_place_autograd_error_names_the_readme_rule_in_one_line():
    x = torch.ones(3, requires_grad=True)
    y = torch.sigmoid(x)
    y.mul_(2)  # sigmoid's backward needs its output unchanged
    with pytest.raises(RuntimeError) as err:
        y.sum().backward()
    said = str(translate(err.value))
    assert "\n" not in said and "In-place operations" in said and said.count("(") == said.count(")"), said
    assert "modified by an inplace operation" in said
    readme = (REPO / "README.md").read_text()
    assert "**In-place operations.**" in readme  # the rule the error names exists where it says


def test_describe_prints_readable_types(capsys):
    assert main(["describe", "voc2012"]) == 0
    out = capsys.readouterr().out
    assert "FieldInfo" not in out and "Annotated" not in out and "Optional" not in out, out
    assert max(len(line) for line in out.splitlines()) < 120
    assert "tuple[float, float]" in out and "int | None" in out


def test_every_built_in_task_is_in_the_readme_task_list():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Built-in tasks", 1)[1].split("###", 1)[0]
    builtin = [e.name for e in TASKS.entries() if e.obj.__module__.startswith("bench.")]
    assert "classify_from_masks" in builtin
    assert [n for n in builtin if f"`{n}`" not in section] == []


def test_validate_cells_lists_every_cell_it_would_run(capsys):
    config = REPO / "configs" / "quickstart.yaml"
    assert main(["validate", str(config), "--cells"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.split("cells (", 1)[1].splitlines()[1:]]
    assert listed == [u.id for u in Plan.build(config).units]
