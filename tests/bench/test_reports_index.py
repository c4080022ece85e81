"""The committed reports/README.md table equals the one re-derived from reports/*/results.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.reports_index import EMPTY_STATE, END, START, committed_table, device_of, refresh, render_table, update, wall
from tests.bench.test_leaderboard import build_runs

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def test_committed_table_is_current():
    """Whatever reports/ holds (zero studies included), its README table must be the regenerated one."""
    readme = REPORTS / "README.md"
    assert START in readme.read_text() and END in readme.read_text()
    assert committed_table(readme) == render_table(REPORTS).strip(), \
        "reports/README.md is stale: run `python -m bench reports`"


def test_generator_on_a_run(tmp_path_factory, tmp_path):
    a, _ = build_runs(tmp_path_factory)  # a real tiny run (shared with the leaderboard tests)
    reports = tmp_path / "reports"
    (reports / "lb").mkdir(parents=True)
    shutil.copy(a / "results.json", reports / "lb" / "results.json")
    (reports / "runs").mkdir()  # a folder without results.json is not a study
    readme = reports / "README.md"
    readme.write_text(f"intro\n{START}\nOLD-TABLE\n{END}\noutro\n")
    assert update(readme) and not update(readme)  # second pass: already current
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "OLD-TABLE" not in text
    res = json.loads((a / "results.json").read_text())
    verdict = res["verdict"]["headline"]
    if verdict is None:  # a 1-epoch U-Net may sit exactly at chance: D undefined, no headline row, and the table says why
        assert f"| [lb](lb/report.md) | no verdict ({res['verdict']['headline_missing']})" in text
    else:
        assert f"| [lb](lb/report.md) | **{verdict['verdict']}** ({verdict['architecture']}, skip_removal:" in text
    prov = res["provenance"]  # the CPU model too: CPU results agree across CPUs only within a tolerance
    assert (f"| {prov['device_name']}; {prov['cpu']} | {wall(res['timings']['study'])} | "
            f"{res['timings']['cells']:.0f} s |") in text
    assert (wall(None), wall(59.6), wall(4071.5)) == ("—", "0:01:00", "1:07:52")
    assert device_of({"device_name": "cpu (x86_64)"}) == "cpu (x86_64); CPU model not recorded"  # older results
    assert "| [lb](lb/report.md) | seg | res | baseline | miou |" in text
    assert "| D block_lesion | D skip_removal |" in text and "D reorder" not in text  # only measured ablations
    assert committed_table(readme) == render_table(reports)


def test_empty_state_and_missing_markers(tmp_path):
    assert render_table(tmp_path) == EMPTY_STATE
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(BenchError, match="results-table:start"):
        update(readme)
    assert readme.read_text() == "no markers here\n"


def test_refresh_is_what_bench_reports_prints(tmp_path):
    with pytest.raises(BenchError, match="README.md: not found; .*--dir"):
        refresh(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\nold\n{END}\n")
    assert refresh(tmp_path) == f"{readme}: updated"
    assert refresh(tmp_path) == f"{readme}: already up to date"
    assert committed_table(readme) == EMPTY_STATE


def test_every_pair_and_interaction_has_a_headline_row(tmp_path):
    """A study with two pairs and their interaction (a committed one: nothing trains) shows all three, each with
    the level its interval was tested at, the seeds it rests on and the look the study stopped at."""
    res = json.loads((REPORTS / "shapes_multi_head" / "results.json").read_text())
    (tmp_path / "smh").mkdir()
    shutil.copy(REPORTS / "shapes_multi_head" / "results.json", tmp_path / "smh" / "results.json")
    text = render_table(tmp_path)
    seq = res["sequential"]
    level, look = f"{100 * (1 - seq['alpha_per_look']):.1f}%", seq["planned_looks"].index(seq["stopped_at"]) + 1
    stopped = f"look {look} of {len(seq['planned_looks'])}: {seq['reason']}"
    inter = res["interaction"]
    expected = [(v["label"], v["headline"]["verdict"], v["headline"]["difference"], v["headline"]["seeds"])
                for v in res["verdicts"]]
    expected.append((f"{inter['second']} − {inter['first']}", inter["call"], inter["difference"], inter["seeds"]))
    assert len(expected) == 3 and seq["stopped_at"] < len(res["config"]["seeds"])  # stopped before its max
    for pair, call, d, seeds in expected:
        row = (f"| [smh](smh/report.md) | {pair} | **{call}** | {d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}] | "
               f"{level} | {seeds} of {seq['stopped_at']} | {stopped} |")
        assert row in text, row
    assert "| 98.7% |" in text  # Pocock's per-look level for seven looks, not 95%
