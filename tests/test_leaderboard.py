"""leaderboard and compare across two real (tiny) runs; bad run folders exit 2 with one line."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bench.cli import main

CONFIG = """
name: lb
seeds: [0, 1]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 64, n_test: 32, image_size: 16, num_classes: 2}
  cls: {name: synthetic_shapes, target: image, n_train: 64, n_test: 32, image_size: 16, num_classes: 2}
architectures:
  res: {name: cifar_resnet, depth: 8, width: 4}
  unet: {name: unet, depth: 1, width: 4}
train: {epochs: 1, batch_size: 32, optimizer: adamw, lr: 0.01}
ablations:
  - {name: block_lesion}
  - {name: skip_removal}
verdict: {dense: seg, global: cls}
bootstrap: 100
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb")
    cfg = root / "lb.yaml"
    cfg.write_text(CONFIG)
    a, b = root / "a", root / "b"
    assert main(["run", str(cfg), "--out", str(a), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(b), "--quiet", "--set", "train.lr=0.02",
                 "--set", "matrix=[[seg, res], [cls, res], [seg, unet]]"]) == 0
    return a, b


def test_leaderboard_csv_numbers_come_from_results(runs, capsys):
    a, b = runs
    assert main(["leaderboard", str(a), str(b), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    res = json.loads((a / "results.json").read_text())
    row = next(r for r in rows if r["study"] == "lb (a)" and (r["task"], r["architecture"], r["variant"]) ==
               ("seg", "res", "baseline"))
    values = [c["metrics"]["miou"] for c in res["cells"] if c["id"].startswith("seg__res__baseline")]
    assert float(row["mean"]) == pytest.approx(sum(values) / 2) and row["n"] == "2"
    deps = [c["ablations"]["block_lesion"]["summary"]["dependence"] for c in res["cells"]
            if c["id"].startswith("seg__res__baseline")]
    assert float(row["block_lesion_mean"]) == pytest.approx(sum(deps) / 2)
    comp = [c["dependence"]["estimate"] for c in res["comparisons"] if (c["task"], c["architecture"]) == ("seg", "res")]
    assert float(row["skip_removal_mean"]) == pytest.approx(sum(comp) / 2)
    assert len({r["study"] for r in rows}) == 2  # runs are never merged


def test_leaderboard_md_and_html(runs, capsys, tmp_path):
    a, b = runs
    assert main(["leaderboard", str(a), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Ranking:") and "| D block_lesion |" in out
    assert main(["leaderboard", str(a), str(b), "--format", "html", "--out", str(tmp_path / "lb.html")]) == 0
    page = (tmp_path / "lb.html").read_text()
    assert page.count("<tr>") == 1 + 8 + 6 and "Ranking:" in page


def test_compare_lists_config_first_and_names_mismatched_cells(runs, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.index("## Configuration differences") < out.index("## Deltas")
    assert "- train.lr: 0.01 -> 0.02" in out and "- matrix: 'all' ->" in out
    assert "only in A: cls/unet/baseline" in out and "only in A: cls/unet/no_identity" in out
    assert "| seg/res/baseline | miou |" in out and "| seg/res/baseline | D block_lesion |" in out


def test_bad_run_folders_exit_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "no results.json here" in capsys.readouterr().err
    (tmp_path / "results.json").write_text('{"schema_version": 1}')
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a valid results.json (schema v1)" in err and err.count("\n") == 1
