"""compare: config differences first, deltas B − A with Welch p over seeds, every mismatch named."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from bench.cli import main
from bench.compare import config_diff, render, welch_p
from tests.bench.test_leaderboard import build_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return build_runs(tmp_path_factory)  # the same two runs as tests/bench/test_leaderboard.py


def test_compare_lists_config_first_and_names_mismatched_cells(runs, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.index("## Configuration differences") < out.index("## Not compared") < out.index("## Deltas")
    assert "- train.lr: 0.01 -> 0.02" in out and "- matrix: 'all' ->" in out
    assert "only in A: cls/unet/baseline" in out and "only in A: cls/unet/no_identity" in out
    assert "only in B:" not in out
    assert "| seg/res/baseline | miou |" in out and "| seg/res/baseline | D block_lesion |" in out
    assert "| cls/unet/" not in out  # unmatched cells are named above, never given a delta


def test_compare_deltas_equal_results(runs, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "config" and kinds.index("delta") > max(i for i, k in enumerate(kinds) if k != "delta")
    assert {"train.lr", "matrix"} <= {r["quantity"] for r in rows if r["kind"] == "config"}
    assert {(r["task"], r["architecture"], r["variant"]) for r in rows if r["kind"] == "only_a"} == \
        {("cls", "unet", "baseline"), ("cls", "unet", "no_identity")}
    ra, rb = (json.loads((p / "results.json").read_text()) for p in runs)

    def values(res, prefix):
        return [c["metrics"]["miou"] for c in res["cells"] if c["id"].startswith(prefix)]

    va, vb = values(ra, "seg__unet__baseline"), values(rb, "seg__unet__baseline")
    row = next(r for r in rows if r["kind"] == "delta" and (r["task"], r["architecture"], r["variant"],
                                                            r["quantity"]) == ("seg", "unet", "baseline", "miou"))
    assert float(row["delta"]) == pytest.approx(sum(vb) / 2 - sum(va) / 2)
    assert (row["n_a"], row["n_b"]) == ("2", "2") and 0 <= float(row["p"]) <= 1
    skip = next(r for r in rows if r["kind"] == "delta" and r["quantity"] == "D skip_removal"
                and (r["task"], r["architecture"]) == ("seg", "unet"))
    da = [c["dependence"]["estimate"] for c in ra["comparisons"] if (c["task"], c["architecture"]) == ("seg", "unet")]
    assert float(skip["a"]) == pytest.approx(sum(da) / 2)


def test_compare_bad_folder_exits_2(runs, tmp_path, capsys):
    (tmp_path / "results.json").write_text('{"schema_version": 1}')  # an older bench's file: refused, one line
    assert main(["compare", str(runs[0]), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "schema v1 was written by an older bench" in err and "re-run the study" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text('{"schema_version": 2}')
    assert main(["compare", str(runs[0]), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a valid results.json (schema v2)" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_bytes(b'{"schema_version": 2, "study": "\xff"}')
    assert main(["compare", str(runs[0]), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and err.count("\n") == 1
    (tmp_path / "results.json").write_text('{"schema_version": 99}')
    assert main(["compare", str(runs[0]), str(tmp_path)]) == 2
    assert "newer than this bench reads" in capsys.readouterr().err


def test_config_diff_is_recursive_and_matches_named_entries():
    a = {"train": {"lr": 0.01, "epochs": 4}, "ablations": [{"name": "x", "k": 1}, {"name": "y"}], "seeds": [0]}
    b = {"train": {"lr": 0.02, "epochs": 4}, "ablations": [{"name": "y"}, {"name": "x", "k": 2}], "device": "cpu"}
    assert config_diff(a, b) == ["ablations.x.k: 1 -> 2", "device: only in B = 'cpu'", "seeds: only in A = [0]",
                                 "train.lr: 0.01 -> 0.02"]
    assert config_diff(a, a) == []


def test_welch_p():
    stats = pytest.importorskip("scipy.stats")
    xa, xb = [0.50, 0.52, 0.55], [0.60, 0.61, 0.66, 0.64]

    def msn(x):
        m = sum(x) / len(x)
        return m, math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)), len(x)

    expected = stats.ttest_ind(xa, xb, equal_var=False).pvalue
    assert welch_p(*msn(xa), *msn(xb)) == pytest.approx(expected)
    assert welch_p(0.5, 0.0, 1, 0.6, 0.01, 3) is None  # one seed: no variance to test against
    assert welch_p(0.5, 0.0, 2, 0.5, 0.0, 2) == 1.0


def test_one_seed_says_na():
    result = {"a": "x", "b": "y", "config_diff": [], "environment": [], "only_a": [], "only_b": [],
              "ablations_only_a": ["reorder"], "ablations_only_b": [], "missing": [(("t", "r", "baseline"), "D lesion", "B")],
              "deltas": [{"cell": ("t", "r", "baseline"), "quantity": "accuracy", "a": 0.5, "b": 0.6, "delta": 0.1,
                          "p": None, "n": (1, 1)}]}
    out = render(result)
    assert "| n/a (1 seed) | 1 vs 1 |" in out and "- none" in out
    assert "measured only in A: D reorder" in out and "no result in B: t/r/baseline D lesion" in out
