"""leaderboard across two real (tiny) runs: numbers equal results.json; bad run folders exit 2 with one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

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


def build_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny runs, built once per test session (shared with tests/test_compare.py via the base temp dir).

    B differs from A by its learning rate and by one architecture fewer on the global task.
    """
    root = tmp_path_factory.getbasetemp() / "lb-runs"
    a, b = root / "a", root / "b"
    if not (a / "results.json").is_file() or not (b / "results.json").is_file():
        root.mkdir(exist_ok=True)
        cfg = root / "lb.yaml"
        cfg.write_text(CONFIG)
        assert main(["run", str(cfg), "--out", str(a), "--quiet", "--restart"]) == 0
        assert main(["run", str(cfg), "--out", str(b), "--quiet", "--restart", "--set", "train.lr=0.02",
                     "--set", "matrix=[[seg, res], [cls, res], [seg, unet]]"]) == 0
    return a, b


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)


def test_leaderboard_csv_numbers_come_from_results(runs, capsys):
    a, b = runs
    assert main(["leaderboard", str(a), str(b), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    res = json.loads((a / "results.json").read_text())
    row = next(r for r in rows if r["study"] == "lb (a)" and (r["task"], r["architecture"], r["variant"]) ==
               ("seg", "res", "baseline"))
    cells = [c for c in res["cells"] if c["id"].startswith("seg__res__baseline")]
    values = [c["metrics"]["miou"] for c in cells]
    assert float(row["mean"]) == pytest.approx(sum(values) / 2) and row["n"] == "2"
    sd = abs(values[0] - values[1]) / 2**0.5  # sample sd (ddof=1) of two values
    assert float(row["std"]) == pytest.approx(sd)
    assert float(row["chance"]) == pytest.approx(sum(c["chance"]["miou"] for c in cells) / 2)
    deps = [c["ablations"]["block_lesion"]["summary"]["dependence"] for c in cells]
    assert float(row["block_lesion_mean"]) == pytest.approx(sum(deps) / 2)
    comp = [c["dependence"]["estimate"] for c in res["comparisons"] if (c["task"], c["architecture"]) == ("seg", "res")]
    assert len(comp) == 2 and float(row["skip_removal_mean"]) == pytest.approx(sum(comp) / 2)
    variant = next(r for r in rows if r["study"] == "lb (a)" and (r["task"], r["architecture"], r["variant"]) ==
                   ("seg", "res", "no_identity"))
    assert variant["skip_removal_mean"] == "" and variant["block_lesion_mean"] == ""  # D lives on the baseline row
    assert {r["study"] for r in rows} == {"lb (a)", "lb (b)"}  # runs are never merged
    assert len(rows) == 8 + 6


def test_leaderboard_ranking(runs, capsys):
    a, b = runs
    assert main(["leaderboard", str(a), str(b), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    keys = [(r["task"], -float(r["mean"])) for r in rows]
    assert keys == sorted(keys)


def test_leaderboard_md_and_html(runs, capsys, tmp_path):
    a, b = runs
    assert main(["leaderboard", str(a / "results.json"), "--format", "md"]) == 0  # a file works as well as a folder
    out = capsys.readouterr().out
    assert out.startswith("Ranking:") and "never merged" in out and "| D block_lesion | D skip_removal |" in out
    assert "| lb (a) | seg | res | baseline | miou |" in out  # the run folder names the row, not results.json
    assert main(["leaderboard", str(a), str(b), "--format", "html", "--out", str(tmp_path / "lb.html")]) == 0
    page = (tmp_path / "lb.html").read_text()
    assert page.count("<tr>") == 1 + 8 + 6 and "Ranking:" in page and "<script" not in page
    assert page.count("<th>") == 7 + 2 + 1


def test_run_label(tmp_path):
    from bench.leaderboard import run_label

    (tmp_path / "lb").mkdir()
    assert run_label("lb", tmp_path / "lb") == "lb"  # folder named after the study: nothing to add
    assert run_label("lb", tmp_path / "a") == "lb (a)"


def test_bad_run_folders_exit_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results.json here" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text('{"schema_version": 1}')
    assert main(["leaderboard", str(tmp_path), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "schema v1 was written by an older bench" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text("{not json")
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "not a valid results.json" in capsys.readouterr().err
