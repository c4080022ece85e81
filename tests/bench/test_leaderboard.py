"""leaderboard across two real (tiny) runs: numbers equal results.json; bad run folders exit 2 with one line."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.leaderboard import build

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
    """Two tiny runs, built once per test session (shared with tests/bench/test_compare.py via the base temp dir).

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
    """Grouped by task; baselines by mean, higher first; each baseline's variants right after it."""
    a, b = runs
    assert main(["leaderboard", str(a), str(b), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    tasks = [r["task"] for r in rows]
    assert tasks == sorted(tasks)
    for task in set(tasks):
        means = [float(r["mean"]) for r in rows if r["task"] == task and r["variant"] == "baseline"]
        assert means == sorted(means, reverse=True)
    for prev, row in zip(rows, rows[1:]):
        if row["variant"] != "baseline":
            assert (prev["study"], prev["task"], prev["architecture"]) == (row["study"], row["task"], row["architecture"])


def test_leaderboard_md_html_latex(runs, capsys, tmp_path):
    a, b = runs
    assert main(["leaderboard", str(a / "results.json"), "--format", "md"]) == 0  # a file works as well as a folder
    out = capsys.readouterr().out
    assert out.startswith("Ranking:") and "never merged" in out and "| D block_lesion | D skip_removal |" in out
    assert "| lb (a) | seg | res | baseline | miou |" in out  # the run folder names the row, not results.json
    html_path = tmp_path / "sub" / "lb.html"
    assert main(["leaderboard", str(a), str(b), "--format", "html", "--out", str(html_path)]) == 0
    page = html_path.read_text()
    assert "http://" not in page and "https://" not in page and " src=" not in page  # self-contained
    assert page.count('<table class="lb">') == 2  # one table per task
    assert page.count('<tbody class="unit">') == 8 + 6 - 7  # a baseline and its variant share a unit
    assert page.count('<tr class="variant') == 7 and "↳ no_identity" in page
    assert "<th>differs</th>" in page and "train.lr=0.02" in page and "matrix=" in page
    assert "cifar_resnet(depth=8, width=4" in page and '<td class="num" data-v="' in page
    rows, _ = build([str(a), str(b)])
    intervals = [ci for r in rows for ci in r["intervals"].values() if ci]
    assert intervals  # what the runs computed (one seed's bootstrap, or the verdict's over seeds) ...
    for (low, high), _, _ in intervals:
        assert f'<span class="ci"> [{low:.3f}, {high:.3f}]</span>' in page  # ... is shown
    verdicts = [v for r in rows for v in r["verdicts"]]
    assert verdicts and all(f"{v['ablation']}: {v['verdict']}</span>" in page for v in verdicts)  # verdict column
    assert f'href="{Path(os.path.relpath(a / "report.md", html_path.parent)).as_posix()}"' in page
    assert main(["leaderboard", str(a), str(b), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert all(k in tex for k in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", "D block\\_lesion"))
    # a heading per task (in each table that has rows of it: D columns that do not fit continue in another)
    assert tex.count(r"\textsuperscript{a} --- Score: ") >= 1 and tex.count(r"\textsuperscript{b} --- Score: ") >= 1
    assert "[" in tex
    assert r"\textsuperscript{c} --- " not in tex


def test_rows_are_keyed_by_what_was_run(runs, tmp_path, capsys):
    """Another run whose `seg` is a different task and whose `unet` is deeper is not ranked with run a."""
    a, _ = runs
    other = tmp_path / "other"
    other.mkdir()
    res = json.loads((a / "results.json").read_text())
    res["config"]["tasks"]["seg"]["noise"] = 0.5
    res["config"]["architectures"]["unet"]["depth"] = 2
    (other / "results.json").write_text(json.dumps(res))
    assert main(["leaderboard", str(a), str(other), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    seg_specs = {r["task_spec"] for r in rows if r["task"] == "seg"}
    assert len(seg_specs) == 2
    ranked = [r for r in rows if r["task"] == "seg"]
    first_spec = ranked[0]["task_spec"]
    n_first = sum(r["task_spec"] == first_spec for r in ranked)
    assert all(r["task_spec"] == first_spec for r in ranked[:n_first])  # contiguous: never interleaved
    assert {r["arch_spec"] for r in rows if r["architecture"] == "unet"} == {
        "unet(depth=1, width=4, input_skip=false)", "unet(depth=2, width=4, input_skip=false)"}
    assert all(r["n_params"] for r in rows)


def test_run_label(tmp_path):
    from bench.leaderboard import run_label

    (tmp_path / "lb").mkdir()
    assert run_label("lb", tmp_path / "lb") == "lb"  # folder named after the study: nothing to add
    assert run_label("lb", tmp_path / "a") == "lb (a)"


def test_bad_run_folders_exit_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no results.json here" in err and err.count("\n") == 1
    from bench.results import SCHEMA_VERSION

    (tmp_path / "results.json").write_text('{"schema_version": 1}')  # an older bench's file
    assert main(["leaderboard", str(tmp_path), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert "schema v1 was written by an older bench" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text(f'{{"schema_version": {SCHEMA_VERSION}}}')  # current, but incomplete
    assert main(["leaderboard", str(tmp_path), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert f"not a valid results.json (schema v{SCHEMA_VERSION})" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text("{not json")
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "not a valid results.json" in capsys.readouterr().err


def test_sufficiency_columns_follow_the_declared_measure_not_the_name(tmp_path):
    """A plugin's readout under another name is an S column; a name alone makes nothing a sufficiency."""
    from bench.leaderboard import render

    data = json.loads((Path(__file__).resolve().parents[2] / "reports" / "quickstart" / "results.json").read_text())
    text = json.dumps(data).replace('"identity_readout"', '"my_readout"')  # every key and config entry
    data = json.loads(text)
    data["ablations"]["block_lesion"]["measure"] = "sufficiency"  # as if it declared one
    (tmp_path / "results.json").write_text(json.dumps(data))
    rows, ablations = build([str(tmp_path)])
    md, html, latex = (render(rows, ablations, fmt, tmp_path / "lb") for fmt in ("md", "html", "latex"))
    for label in ("S my_readout", "S block_lesion", "D skip_lesion"):
        assert label in md and f">{label}</th>" in html and label.replace("_", r"\_") in latex
    assert "identity_readout" not in md and "D my_readout" not in md
