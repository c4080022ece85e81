"""CLI: exit codes, one-line errors, help with examples, list, validate, and an end-to-end tiny run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import COMMANDS, main

TINY = """
name: tiny
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 96, n_test: 48, image_size: 16, num_classes: 3}
  cls: {name: synthetic_shapes, target: image, n_train: 96, n_test: 48, image_size: 16, num_classes: 3}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
  unet: {name: unet, depth: 1, width: 4}
train: {epochs: 4, batch_size: 32, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
  - {name: identity_readout, epochs: 1}
  - {name: skip_removal}
verdict: {dense: seg, global: cls, ablation: skip_removal, architecture: unet}
bootstrap: 200
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY)
    out = root / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def test_run_writes_the_run_folder(tiny_run):
    _, out = tiny_run
    for name in ("config.resolved.yaml", "results.json", "report.md", "block_lesion.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert report.splitlines()[2] == "## Verdict"


def test_results_numbers_are_consistent(tiny_run):
    _, out = tiny_run
    res = json.loads((out / "results.json").read_text())
    assert res["schema_version"] == 2 and res["provenance"]["torch"] == torch.__version__
    assert res["scale"] == "balanced_accuracy"
    assert res["ablations"]["skip_removal"] == {"version": 2, "phase": "train", "removes": "identity",
                                                "measure": "dependence", "reads": "model", "family": "identity",
                                                "higher_is_better": False}
    assert res["ablations"]["block_lesion"]["family"] == "ensemble"
    cells = {c["id"]: c for c in res["cells"]}
    # 2 tasks x (res: baseline + no_identity, unet: baseline + no_identity) x 1 seed
    assert len(cells) == 8 and all(c["status"] == "ok" for c in cells.values())
    assert all(c["computed_with"]["git_commit"] == res["provenance"]["git_commit"] for c in cells.values())
    from bench.tasks.synthetic import synthetic_shapes

    task = synthetic_shapes(target="image", n_train=96, n_test=48, image_size=16, num_classes=3)
    majority = torch.bincount(task.train.targets()).argmax()
    expected_chance = float((task.test.targets() == majority).float().mean())
    cls = cells["cls__res__baseline__s0"]
    assert cls["chance"]["accuracy"] == pytest.approx(expected_chance)
    assert 0 <= cls["metrics"]["accuracy"] <= 1
    seg = cells["seg__res__baseline__s0"]
    assert set(seg["metrics"]) >= {"miou", "pixel_accuracy", "boundary_accuracy", "per_class_iou"}
    assert len(seg["metrics"]["per_class_iou"]) == 4
    lesion = seg["ablations"]["block_lesion"]
    assert len(lesion["records"]) == 3  # depth 8 = 3 blocks
    for rec in lesion["records"]:  # D recomputed from the stored numbers, on balanced accuracy
        full, chance = seg["metrics"]["balanced_accuracy"], seg["chance"]["balanced_accuracy"]
        assert chance == pytest.approx(1 / 4)  # 4 classes in the labels: exactly 1/C
        # from the 6-decimal rounded scores: D divides by a small margin here, so allow the rounding through it
        assert rec["dependence"] == pytest.approx(1 - (rec["score"] - chance) / (full - chance), rel=1e-3, abs=1e-5)
        assert rec["delta_primary"] == pytest.approx(rec["primary"] - seg["metrics"]["miou"], abs=1e-5)
    assert lesion["summary"]["dependence"] == pytest.approx(np.mean([r["dependence"] for r in lesion["records"]]))
    assert [r["key"]["downsampling"] for r in lesion["records"]] == [False, True, True]
    assert "block_lesion" in cells["seg__unet__baseline__s0"]["not_applicable"]
    comp = {(c["task"], c["architecture"]): c for c in res["comparisons"]}
    c = comp[("seg", "unet")]
    assert c["primary_ablated"] == cells["seg__unet__no_identity__s0"]["metrics"]["miou"]
    low, est, high = c["dependence"]["low"], c["dependence"]["estimate"], c["dependence"]["high"]
    assert low <= est <= high
    v = res["verdict"]
    # one seed: below min_seeds the rule makes no call (and the margins have no interval: ill-conditioned first)
    assert v["headline"]["architecture"] == "unet" and v["headline"]["role"] == "headline"
    assert v["headline"]["verdict"] in {"underpowered", "ill-conditioned"}
    # families from the declarations; identity_readout reads the input: one row, not one per architecture
    assert [(r["family"], r["architecture"], r["ablation"]) for r in v["rows"]] == [
        ("ensemble", "res", "block_lesion"), ("sufficiency", "(input)", "identity_readout"),
        ("identity", "res", "skip_removal"), ("identity", "unet", "skip_removal")]
    readout = cells["seg__res__baseline__s0"]["ablations"]["identity_readout"]["summary"]["sufficiency"]
    assert v["rows"][1]["measure"] == "sufficiency" and v["rows"][1]["dense"]["estimate"] == pytest.approx(readout, abs=1e-6)
    assert v["rows"][2]["dense"]["per_seed"] == {"0": pytest.approx(comp[("seg", "res")]["dependence"]["estimate"])}



def test_verdict_says_what_would_change_it_and_checks_conditioning(tiny_run):
    from bench.report import WHAT_WOULD_CHANGE

    _, out = tiny_run
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    head = res["verdict"]["headline"]
    assert "What would change it: " + WHAT_WOULD_CHANGE[head["verdict"]] in report
    assert all(text not in report for v, text in WHAT_WOULD_CHANGE.items() if v != head["verdict"])
    assert f"Conditioning: {head['conditioning']['note']}." in report
    for row in res["verdict"]["rows"]:  # every row carries its conditioning check
        c = row["conditioning"]
        assert c["note"] and c["threshold"] == 0.1
        if c["dense_margin"] is not None:
            margins = [c["dense_margin"]["low"], c["global_margin"]["low"]]
            assert c["ok"] == all(m is not None and m > 0.1 for m in margins)
            # one seed: underpowered comes first; otherwise a failed check is ill-conditioned
            assert row["verdict"] == "underpowered" or (row["verdict"] == "ill-conditioned") == (not c["ok"])

def test_rerun_resumes_without_recomputing(tiny_run, capsys):
    cfg, out = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    first = json.loads((out / "results.json").read_text())["timings"]
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert before == after
    res = json.loads((out / "results.json").read_text())
    again = res["timings"]
    # timings.cells is the compute behind the results (the cells' own), not this resume's wall time
    # (timings.study); no timing is compared with another: a loaded machine may reorder them
    assert again["cells"] == first["cells"] and res["invocations"][-1]["cells_computed"] == 0


def test_changed_config_is_refused_with_the_difference(tiny_run, capsys):
    cfg, out = tiny_run
    assert main(["run", str(cfg), "--out", str(out), "--set", "train.lr=0.2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train: {" not in err and "lr: 0.01 -> 0.2" in err and "--restart" in err and "\n" not in err


def test_validate_and_list(tmp_path, capsys):
    assert main(["validate", "configs/quickstart.yaml"]) == 0
    out = capsys.readouterr().out
    assert "ok — 2 task(s), 2 architecture(s), 4 pair(s), 5 ablation(s), 5 seed(s)" in out and "block_lesion skips unet" in out
    assert main(["list", "architectures"]) == 0
    out = capsys.readouterr().out
    assert "cifar_resnet" in out and "params" in out and "natural for segmentation" in out


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("depth: 8", "depht: 8"))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "architectures.res.depht: unknown key (did you mean: depth?)" in err
    assert "Traceback" not in err
    lesion = tmp_path / "lesion.yaml"
    lesion.write_text(TINY.replace("{name: block_lesion}", "{name: block_lesion, blocks: [trunk.99]}"))
    assert main(["validate", str(lesion)]) == 2
    assert "ablations.block_lesion on res: no block named 'trunk.99'" in capsys.readouterr().err


def test_help_ends_with_examples(capsys):
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2])  # the real entry point, once
    assert out.returncode == 0 and "python -m bench" in out.stdout.strip().split("examples:")[-1]
    for cmd in COMMANDS:  # every subcommand's help, in this process
        with pytest.raises(SystemExit) as done:
            main([cmd.name, "--help"])
        assert done.value.code == 0
        tail = capsys.readouterr().out.strip().split("examples:")[-1]
        assert f"python -m bench {cmd.name}" in tail, cmd.name


def test_debug_shows_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "--debug", "validate", str(tmp_path / "none.yaml")],
                         capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 2 and "Traceback" in out.stderr and "no such config file" in out.stderr


def test_plugin_flag_after_the_subcommand_and_describe_shows_its_parameters(tmp_path, capsys):
    plugin = tmp_path / "late_net.py"
    plugin.write_text('from bench.registry import ARCHITECTURES\n'
                      'from bench.models.unet import unet\n\n'
                      '@ARCHITECTURES.register("late_net")\n'
                      'def late_net(task, width: int = 4):\n'
                      '    """A plugin loaded after the subcommand."""\n'
                      '    return unet(task, depth=2, width=width)\n')
    assert main(["describe", "late_net", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "A plugin loaded after the subcommand." in out
    assert re.search(r"width\s+int\s+4", out)
    assert "natural for both task kinds" in out
    assert re.search(r"segmentation \(10 classes, 32x32\): [\d,]+", out)


def test_describe_shows_bounds_and_list_tasks_shows_parameters(capsys):
    assert main(["describe", "effective_depth_training"]) == 0
    assert re.search(r"keep_fraction\s+float\s+[\d.]+\s+> 0, <= 1", capsys.readouterr().out)
    assert main(["list", "tasks"]) == 0
    assert "params: root, num_classes, ignore_index=255" in capsys.readouterr().out


def test_unknown_name_suggests_plugins(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tasks: {t: {name: synthetic_shapes}}\narchitectures: {a: {name: my_net}}\n"
                      "ablations: [{name: block_lesion}]\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "--plugin" in err and "bench.architectures" in err
    assert main(["describe", "no_such_thing"]) == 2
    assert "--plugin" in capsys.readouterr().err
