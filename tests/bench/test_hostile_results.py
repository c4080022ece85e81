"""Every reader validates results.json: a field of the wrong type is one line naming the file and the field
(exit 2, no traceback), and no plugin name can stand for a field of the leaderboard or compare tables.

Valid files are built from the committed reports/quickstart/results.json; each test damages one field."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.cli import main
from bench.compare import compare
from bench.leaderboard_table import build, d_of
from bench.reports_index import END, START
from bench.results import load_results
from tests.helpers import QUICKSTART_RESULTS, write_run

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = QUICKSTART_RESULTS


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads(TEMPLATE.read_text())


def first_with(data: dict, ablation: str) -> int:
    return next(i for i, c in enumerate(data["cells"]) if ablation in c["ablations"])


def metric(data: dict, value) -> str:
    data["cells"][0]["metrics"][data["cells"][0]["primary_metric"]] = value
    return f"cells.0.metrics.{data['cells'][0]['primary_metric']}"


def chance(data: dict, value) -> str:
    data["cells"][0]["chance"][data["cells"][0]["primary_metric"]] = value
    return f"cells.0.chance.{data['cells'][0]['primary_metric']}"


def summary_dependence(data: dict) -> str:
    i = first_with(data, "block_lesion")
    data["cells"][i]["ablations"]["block_lesion"]["summary"]["dependence"] = "0.4"
    return f"cells.{i}.ablations.block_lesion.summary.dependence"


def record(data: dict, field: str, value) -> str:
    i = first_with(data, "block_lesion")
    data["cells"][i]["ablations"]["block_lesion"]["records"][0][field] = value
    return f"cells.{i}.ablations.block_lesion.records.0.{field}"


def per_class(data: dict) -> str:
    i = next(i for i, c in enumerate(data["cells"]) if "per_class_iou" in c["metrics"])
    data["cells"][i]["metrics"]["per_class_iou"] = "0.5"
    return f"cells.{i}.metrics.per_class_iou"


def set_path(path: str, value) -> Callable[[dict], str]:
    """Damage the field at a dotted path (list indices as numbers); the error must name that path."""
    def damage(data: dict) -> str:
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
        return path
    return damage


DAMAGES: dict[str, Callable[[dict], str]] = {
    "metric is a string": lambda d: metric(d, "0.9"),
    "metric is a list": lambda d: metric(d, [0.9]),
    "metric is a bool": lambda d: metric(d, True),
    "chance is a string": lambda d: chance(d, "0.25"),
    "per-class IoU is a string": per_class,
    "config.ablations is a string": set_path("config.ablations", "block_lesion"),
    "config.ablations entry is a string": set_path("config.ablations.0", "block_lesion"),
    "config.tasks is a list": set_path("config.tasks", ["shapes_seg"]),
    "config task spec is a string": set_path("config.tasks.shapes_seg", "synthetic_shapes"),
    "config.architectures is a string": set_path("config.architectures", "resnet"),
    "comparison dependence is a string": set_path("comparisons.0.dependence.estimate", "0.5"),
    "comparison dependence is a string, whole": set_path("comparisons.0.dependence", "0.5"),
    "summary dependence is a string": summary_dependence,
    "record dependence is a string": lambda d: record(d, "dependence", "0.5"),
    "record primary is a list": lambda d: record(d, "primary", [0.5]),
    "declared measure is a list": set_path("ablations.block_lesion.measure", ["dependence"]),
    "per-seed value is a string": set_path("verdict.headline.difference.per_seed.0", "0.2"),
    "verdict call unknown": set_path("verdict.rows.0.verdict", "maybe"),
    "verdict alpha is a string": set_path("verdict.alpha", "0.05"),
    "verdict headline is a string": set_path("verdict.headline", "supported"),
    "verdict is a list": set_path("verdict", []),
    "verdict row seeds is a string": set_path("verdict.rows.0.seeds", "5"),
    "timings value is a string": set_path("timings.study", "300"),
    "cell seed is a float": set_path("cells.0.seed", 0.5),
}


@pytest.fixture(params=sorted(DAMAGES), ids=lambda k: k.replace(" ", "-"))
def damaged(request, template, tmp_path) -> tuple[Path, str]:
    data = copy.deepcopy(template)
    field = DAMAGES[request.param](data)
    return write_run(tmp_path / "reports" / "bad", data), field


def one_line_naming(capsys, path: Path, field: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{path / 'results.json'}: " in err and f": {field}: " in err and "re-run the study" in err, err
    return err


def test_leaderboard_names_the_damaged_field(damaged, capsys):
    run, field = damaged
    for fmt in ("md", "csv", "html", "latex"):
        assert main(["leaderboard", str(run), "--format", fmt]) == 2
        one_line_naming(capsys, run, field)


def test_compare_names_the_damaged_field(damaged, template, tmp_path, capsys):
    run, field = damaged
    good = write_run(tmp_path / "good", template)
    for a, b in ((good, run), (run, good)):
        assert main(["compare", str(a), str(b)]) == 2
        one_line_naming(capsys, run, field)


def test_reports_names_the_damaged_field(damaged, capsys):
    run, field = damaged
    (run.parent / "README.md").write_text(f"intro\n{START}\nold\n{END}\n")
    assert main(["reports", "--dir", str(run.parent)]) == 2
    one_line_naming(capsys, run, field)
    assert "old" in (run.parent / "README.md").read_text()  # nothing written from a damaged file


def test_the_error_names_the_field_not_the_model(template, tmp_path):
    data = copy.deepcopy(template)
    metric(data, "high")
    write_run(tmp_path, data)
    from bench.errors import BenchError

    with pytest.raises(BenchError) as err:
        load_results(tmp_path)
    assert str(err.value) == (f"{tmp_path / 'results.json'}: not a valid results.json (schema v2): "
                              f"cells.0.metrics.{data['cells'][0]['primary_metric']}: Input should be a valid "
                              "number; re-run the study")


@pytest.mark.parametrize("path", sorted(ROOT.glob("reports/*/results.json")), ids=lambda p: p.parent.name)
def test_every_committed_results_file_loads_unchanged(path):
    """The strict schema reads every committed study, and gives back what the file holds, in its order."""
    raw = json.loads(path.read_text())
    res = load_results(path)
    dumped = res.model_dump(mode="json")
    for cell, dumped_cell in zip(raw["cells"], dumped["cells"]):
        for key in ("metrics", "chance", "train"):
            assert list(dumped_cell[key]) == list(cell[key])
    assert list(dumped["config"]) == list(raw["config"])

    def known(dumped: object, like: object) -> object:
        """``dumped`` without the fields the schema gained since the file was written (at their defaults)."""
        if isinstance(dumped, dict) and isinstance(like, dict):
            return {k: known(v, like[k]) for k, v in dumped.items() if k in like}
        if isinstance(dumped, list) and isinstance(like, list):
            return [known(v, w) for v, w in zip(dumped, like)]
        return dumped

    assert known(dumped, raw) == raw


# ------------------------------------------------------------------ plugin names that equal table fields
def table_fields(template: dict, tmp_path: Path) -> list[str]:
    """Every key of a leaderboard row (after ``build``), of its nested maps, and of a compare delta: the names
    a plugin ablation could collide with, read off the code's own dicts so new fields are covered."""
    run = write_run(tmp_path / "fields", template)
    rows, _ = build([str(run)])
    fields = {k for r in rows for k in r}
    fields |= {k for r in rows for k, v in r.items() if isinstance(v, dict) for k in v}
    result = compare(str(run), str(run))
    fields |= set(result) | {k for d in result["deltas"] for k in d}
    return sorted(f for f in fields if f not in template["ablations"])


def with_plugins(template: dict, names: list[str]) -> tuple[dict, dict[str, float]]:
    """The template plus one test-time plugin ablation per name (block_lesion's outputs, each with its own D)."""
    data = copy.deepcopy(template)
    values = {name: round(0.01 * (i + 1), 6) for i, name in enumerate(names)}
    for name, value in values.items():
        data["config"]["ablations"].append({"name": name})
        data["ablations"][name] = dict(data["ablations"]["block_lesion"], family="descriptive")
        for cell in data["cells"]:
            if "block_lesion" in cell["ablations"]:
                out = copy.deepcopy(cell["ablations"]["block_lesion"])
                out["summary"] = {"dependence": value}
                out["summary_ci"] = None
                cell["ablations"][name] = out
    return data, values


def csv_rows(capsys) -> list[dict]:
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_plugin_ablations_named_like_every_table_field(template, tmp_path, capsys):
    names = table_fields(template, tmp_path)
    assert {"value", "intervals", "chance", "metric", "study", "measures", "deltas", "quantity"} <= set(names)
    plain = write_run(tmp_path / "plain", template)
    hostile, values = with_plugins(template, names)
    run = write_run(tmp_path / "hostile", hostile)

    assert main(["leaderboard", str(plain), "--format", "csv"]) == 0
    before = {(r["task"], r["architecture"], r["variant"]): r for r in csv_rows(capsys)}
    assert main(["leaderboard", str(run), "--format", "csv"]) == 0
    after = csv_rows(capsys)
    assert len(after) == len(before)
    for r in after:
        old = before[(r["task"], r["architecture"], r["variant"])]
        for col in ("mean", "std", "n", "chance", "failed", "task_spec", "arch_spec", "n_params", "block_lesion_mean"):
            assert r[col] == old[col], col  # the score column is the score, never a plugin's D
        measured = old["block_lesion_mean"] != ""
        for name, value in values.items():
            assert (float(r[f"{name}_mean"]) == pytest.approx(value)) if measured else r[f"{name}_mean"] == ""
    assert all(r["mean"] for r in after)  # the score column is not blank

    rows, columns = build([str(run)])
    assert set(values) <= set(columns)
    assert all(d_of(r, n)[0] == pytest.approx(v) for r in rows for n, v in values.items() if d_of(r, n)[0])
    for fmt in ("md", "html", "latex"):
        assert main(["leaderboard", str(run), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert all(f"S {n}" in out or f"D {n}" in out or f"D {n}".replace("_", r"\_") in out for n in values)

    assert main(["leaderboard", str(run)]) == 0
    md = capsys.readouterr().out
    table = [line for line in md.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in table[0].strip("|").split(" | ")]
    score = header.index("value")
    body = [[c.strip() for c in line.strip("|").split(" | ")] for line in table[1:]]
    assert body and all(row[score] not in ("", "—") for row in body)


def test_compare_with_plugin_ablations_named_like_every_field(template, tmp_path, capsys):
    names = table_fields(template, tmp_path)
    hostile, values = with_plugins(template, names)
    a = write_run(tmp_path / "a", hostile)
    for name in values:
        for cell in hostile["cells"]:
            if name in cell["ablations"]:
                cell["ablations"][name]["summary"]["dependence"] = values[name] + 0.5
    b = write_run(tmp_path / "b", hostile)
    assert main(["compare", str(a), str(b), "--format", "csv"]) == 0
    deltas = [r for r in csv_rows(capsys) if r["kind"] == "delta"]
    primary = {r["quantity"] for r in deltas} & {"miou", "accuracy"}
    assert primary == {"miou", "accuracy"}
    assert all(float(r["delta"]) == 0 for r in deltas if r["quantity"] in primary)  # the metric, not a plugin's D
    for name, value in values.items():
        mine = [r for r in deltas if r["quantity"] == f"D {name}"]
        assert mine and all(float(r["a"]) == pytest.approx(value) and float(r["delta"]) == pytest.approx(0.5)
                            for r in mine), name
    assert main(["compare", str(a), str(b)]) == 0
    assert "| D value |" in capsys.readouterr().out


@pytest.mark.parametrize("text, what", [("NaN", "NaN is not a number"), ("Infinity", "Infinity is not a number"),
                                        ("-Infinity", "-Infinity is not a number"),
                                        ("1e400", "1e400 is beyond the range of a number"),
                                        ("1" + "0" * 400, "is beyond the range of a whole number")])
def test_numbers_bench_never_writes_are_refused_by_every_reader(text, what, template, tmp_path, capsys):
    """json reads NaN, Infinity and numbers past float range, and pydantic takes them: readers then failed on
    them (bench power, the HTML leaderboard). bench writes finite numbers only, so such a file was edited."""
    raw = json.dumps(template).replace('"alpha": 0.05', f'"alpha": {text}', 1)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(raw)
    for argv in (["power", str(run)], ["leaderboard", str(run), "--format", "html"], ["compare", str(run), str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and what in err and "results.json: not a valid results.json" in err, err
