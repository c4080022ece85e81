"""Studies that grow and studies that pay only for their headline (issue 25, items 6 and 7).

- Growing: re-running a finished study with more seeds (only ``seeds`` changed) trains only the new seeds'
  cells, each invocation is listed, and the result equals a fresh run with all the seeds.
- ``headline_only: true``: only the cells the verdict's headline reads are trained, and the headline
  (estimates, intervals, per-seed values, conditioning, call) equals the full study's.
"""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from bench.cli import main
from tests.helpers import one_torch_thread, without

STUDY = """
name: rounds
seeds: {seeds}
tasks:
  seg: {{name: synthetic_shapes, target: pixel, n_train: 64, n_test: 32, image_size: 16, num_classes: 3}}
  cls: {{name: synthetic_shapes, target: image, n_train: 64, n_test: 32, image_size: 16, num_classes: 3}}
architectures:
  unet: {{name: unet, depth: 1, width: 4}}
  net: {{name: cifar_resnet, depth: 8, width: 4}}
train: {{epochs: 3, batch_size: 16, lr: 0.05}}
ablations:
  - {{name: skip_removal}}
  - {{name: block_lesion}}
verdict: {{dense: seg, global: cls, ablation: skip_removal, architecture: unet, min_seeds: 6}}
bootstrap: 100
"""
VOLATILE = {"wall_s", "images_per_s", "timings", "provenance", "computed_with", "invocations", "resumed_from_step"}


def run(config: Path, out: Path, *extra: str) -> int:
    with one_torch_thread():
        return main(["run", str(config), "--out", str(out), "--quiet", *extra])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def config(folder: Path, seeds: list[int], name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(STUDY.format(seeds=seeds))
    return path


def test_growing_seeds_trains_only_the_new_cells_and_equals_a_fresh_run(tmp_path):
    out = tmp_path / "grown"
    assert run(config(tmp_path, [0, 1]), out, "--set", "headline_only=true") == 0
    first = results(out)
    assert first["invocations"][-1]["cells_computed"] == 8  # 2 tasks x (baseline, no_identity) x 2 seeds
    cells_before = {p.name: p.read_bytes() for p in (out / "cells").iterdir()}

    assert run(config(tmp_path, [0, 1, 2]), out, "--set", "headline_only=true") == 0
    grown = results(out)
    assert [i["cells_computed"] for i in grown["invocations"]] == [8, 4]  # each round listed
    assert all((out / "cells" / n).read_bytes() == b for n, b in cells_before.items())  # old cells untouched
    assert grown["verdict"]["headline"]["seeds"] == 3

    fresh = tmp_path / "fresh"
    assert run(config(tmp_path, [0, 1, 2], "fresh.yaml"), fresh, "--set", "headline_only=true") == 0
    assert without(results(fresh), VOLATILE | {"study"}) == without(grown, VOLATILE | {"study"})


def test_a_change_beside_the_seeds_is_still_refused_and_so_is_dropping_a_seed(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(config(tmp_path, [0, 1]), out, "--set", "headline_only=true") == 0
    capsys.readouterr()
    assert run(config(tmp_path, [0, 1, 2]), out, "--set", "headline_only=true", "--set", "train.lr=0.02") == 2
    assert "holds a run of a different config" in capsys.readouterr().err
    assert run(config(tmp_path, [0]), out, "--set", "headline_only=true") == 2
    assert "holds a run of a different config" in capsys.readouterr().err


@pytest.fixture(scope="module")
def full_and_headline(tmp_path_factory) -> tuple[dict, dict]:
    folder = tmp_path_factory.mktemp("headline")
    study = config(folder, [0, 1, 2])
    assert run(study, folder / "full") == 0
    assert run(study, folder / "head", "--set", "headline_only=true") == 0
    return results(folder / "full"), results(folder / "head")


def test_headline_only_trains_only_the_headline_cells(full_and_headline):
    full, head = full_and_headline
    ids = sorted(c["id"] for c in head["cells"])
    assert ids == sorted(f"{t}__unet__{v}__s{s}" for t in ("seg", "cls") for v in ("baseline", "no_identity")
                         for s in (0, 1, 2))
    assert len(full["cells"]) == 24  # both architectures: the exploratory rows' cells
    assert all(c["ablations"] == {} for c in head["cells"])  # no test-time ablation ran
    assert head["config"]["headline_only"] is True and list(head["config"]["architectures"]) == ["unet"]


def test_headline_only_gives_the_full_studys_headline(full_and_headline):
    full, head = full_and_headline
    a, b = full["verdict"]["headline"], head["verdict"]["headline"]
    assert a["verdict"] == b["verdict"]
    for side in ("dense", "global_", "difference"):
        assert a[side] == b[side], side
    assert a["conditioning"] == b["conditioning"]
    assert len(head["verdict"]["rows"]) == 1


def test_headline_only_without_a_verdict_is_one_line(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(seeds=[0]).split("verdict:")[0] + "bootstrap: 100\n")
    with one_torch_thread():
        assert main(["validate", str(study), "--set", "headline_only=true"]) == 2
    assert "headline_only: true needs a verdict: block" in capsys.readouterr().err


# --- seeds until decided: rounds walked by the driver (bench.sequential) ------------------------------------
ROUNDS = ("--set", "headline_only=true", "--set", "seeds={start: 6, step: 1, max: 7}", "--set", "verdict.stop=halfwidth")


def test_rounds_stop_at_the_first_look_that_meets_the_rule_and_a_resume_stops_there_again(tmp_path, monkeypatch):
    """The driver's side: it stops at the first look whose headlines meet the rule (the rule itself, on real
    intervals, is tests/bench/test_sequential_calibration.py; these tiny nets leave some seeds' D undefined)."""
    import bench.driver  # noqa: PLC0415

    monkeypatch.setattr(bench.driver, "should_stop", lambda heads, stop, width: True)
    out = tmp_path / "run"
    assert run(config(tmp_path, [0]), out, *ROUNDS, "--set", "verdict.halfwidth=9.9") == 0
    first = results(out)
    seq = first["sequential"]
    assert (seq["planned_looks"], seq["stopped_at"], [lk["seeds"] for lk in seq["looks"]]) == ([6, 7], 6, [6])
    assert seq["alpha_per_look"] == 0.05 and "half-width within 9.9" in seq["reason"]
    assert first["invocations"][-1]["cells_computed"] == 24  # 2 tasks x 2 variants x 6 seeds: seed 6 never ran
    assert sorted({c["seed"] for c in first["cells"]}) == list(range(6))
    assert first["config"]["seeds"] == list(range(7)) and first["config"]["rounds"] == {"start": 6, "step": 1}
    assert "**Stopped at 6 seeds**" in (out / "report.md").read_text()
    assert run(config(tmp_path, [0]), out, *ROUNDS, "--set", "verdict.halfwidth=9.9") == 0
    again = results(out)
    assert again["invocations"][-1]["cells_computed"] == 0
    assert without(again["sequential"], VOLATILE) == without(seq, VOLATILE)


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> tuple[Path, list[str]]:
    """A study in rounds whose rule is never met, walked to its last look once for the tests below: its folder
    and the look lines it printed (not --quiet)."""
    folder = tmp_path_factory.mktemp("walked")
    out, err = folder / "run", io.StringIO()
    with one_torch_thread(), redirect_stderr(err):
        assert main(["run", str(config(folder, [0])), "--out", str(out), *ROUNDS,
                     "--set", "verdict.halfwidth=0.0001"]) == 0
    return out, [ln for ln in err.getvalue().splitlines() if ln.startswith("look at ")]


def test_rounds_walk_every_look_until_the_last_when_the_rule_is_never_met(walked):
    out, lines = walked  # each look printed one line of what it saw and whether the study goes on
    assert len(lines) == 2 and lines[0].startswith("look at 6 seeds: ") and lines[0].endswith("-> going on to 7 seeds")
    assert lines[1].startswith("look at 7 seeds: ") and lines[1].endswith("-> stopping here")
    seq = results(out)["sequential"]
    looks = json.loads((out / "looks.json").read_text())  # rewritten at each look; at the stop it agrees
    assert (looks["looks"], looks["next_look"], looks["planned_looks"]) == (seq["looks"], None, [6, 7])
    assert ([lk["seeds"] for lk in seq["looks"]], seq["stopped_at"]) == ([6, 7], 7)
    assert seq["reason"] == "the last planned look (max seeds)"
    assert results(out)["verdict"]["headline"]["seeds"] + len(results(out)["verdict"]["headline"]["missing_seeds"]) == 7


def test_a_study_stopped_between_looks_keeps_what_its_looks_said(walked, tmp_path, monkeypatch):
    """results.json is written at the stop; looks.json at every look, before the next one's cells: a study that
    grows over several sessions (or is killed between looks) has its looks' numbers in a file bench wrote. Shown
    by walking the finished study again (nothing trains) and interrupting its second look; --restart removes it."""
    import bench.driver  # noqa: PLC0415
    from bench.rundir import RunDir  # noqa: PLC0415

    out = tmp_path / "run"
    shutil.copytree(walked[0], out)
    real, calls = bench.driver.load_and_assemble, []

    def second_look_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a SIGINT while the second look assembles
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.driver, "load_and_assemble", second_look_interrupted)
    assert run(config(tmp_path, [0]), out, *ROUNDS, "--set", "verdict.halfwidth=0.0001") == 130  # cells kept
    looks = json.loads((out / "looks.json").read_text())
    assert ([lk["seeds"] for lk in looks["looks"]], looks["next_look"], looks["stop"]) == ([6], 7, "halfwidth")
    assert looks["looks"][0] == results(out)["sequential"]["looks"][0]  # the same look as the finished walk's
    RunDir(out).clean(restart=True)  # what --restart does first: an earlier plan's looks do not outlive it
    assert not (out / "looks.json").exists() and (out / "results.json").exists()


def test_stop_decided_tests_every_look_at_pococks_level(tmp_path):
    from bench.config import load_config  # noqa: PLC0415

    cfg = load_config(config(tmp_path, [0]), ["seeds={start: 10, step: 5, max: 40}"])
    from bench.driver import look_plans  # noqa: PLC0415
    from bench.plan import Plan  # noqa: PLC0415

    plans = list(look_plans(Plan.from_config(cfg, tmp_path / "study.yaml")))
    assert [len(p.cfg.seeds) for p in plans] == [10, 15, 20, 25, 30, 35, 40]
    assert {p.cfg.verdict.alpha for p in plans} == {0.0130}


def test_stop_interaction_stops_when_the_two_pairs_interaction_is_decided(tmp_path, monkeypatch):
    """The driver's side of ``stop: interaction``: it reads the two pairs' interaction at each look (its rule
    at Pocock's level: tests/bench/test_sequential_calibration.py), records it in the look and the report, and
    stops at the first look where it is decided."""
    import bench.driver  # noqa: PLC0415

    real = bench.driver.look_calls
    monkeypatch.setattr(bench.driver, "look_calls",  # the tiny nets' interaction is decided at the second look
                        lambda look, stop: [("supported", None)] if look.seeds == 7 else real(look, stop))
    two = ("verdict=[{label: a, dense: seg, global: cls, ablation: skip_removal, architecture: unet, stop: interaction},"
           " {label: b, dense: seg, global: cls, ablation: skip_removal, architecture: unet, stop: interaction}]")
    out = tmp_path / "run"
    assert run(config(tmp_path, [0]), out, "--set", "headline_only=true", "--set",
               "seeds={start: 6, step: 1, max: 8}", "--set", two) == 0
    seq = results(out)["sequential"]
    assert ([lk["seeds"] for lk in seq["looks"]], seq["stopped_at"], seq["reason"]) == ([6, 7], 7,
                                                                                          "the interaction decided")
    assert seq["stop"] == "interaction" and seq["alpha_per_look"] == 0.0221  # Pocock, three planned looks (6, 7, 8)
    assert all(set(lk["interaction"]) == {"estimate", "low", "high", "call"} for lk in seq["looks"])
    assert "stopping when the two pairs' interaction is decided" in (out / "report.md").read_text()


def test_a_recorded_look_is_read_the_way_the_stop_reads_it():
    """The reason a study records for stopping comes from the last look itself: supported headlines whose
    half-width (0.4) is over the target (0.1) do not meet stop: halfwidth, and an interaction that is not decided
    does not meet stop: interaction, whatever the look's index."""
    from bench.driver import look_calls  # noqa: PLC0415
    from bench.results import Look  # noqa: PLC0415
    from bench.sequential import should_stop  # noqa: PLC0415

    wide = Look(seeds=40, headlines={"a": {"estimate": 0.5, "low": 0.1, "high": 0.9, "call": "supported"}},
                interaction={"estimate": 0.0, "low": None, "high": None, "call": "ill-conditioned"})
    assert look_calls(wide, "halfwidth") == [("supported", pytest.approx(0.4))]
    assert not should_stop(look_calls(wide, "halfwidth"), "halfwidth", 0.1)
    assert should_stop(look_calls(wide, "decided"), "decided", None)
    assert not should_stop(look_calls(wide, "interaction"), "interaction", None)
    decided = wide.model_copy(update={"interaction": {"estimate": -0.5, "low": -0.9, "high": -0.1,
                                                      "call": "first higher"}})
    assert look_calls(decided, "interaction") == [("contradicted", None)]


def test_a_look_prints_each_headline_the_interaction_and_what_comes_next():
    """The line a growing study prints per look (results.json is written only at its stop): intervals where the
    look has them, the call and estimate where it has none, and the next planned look or the stop."""
    from bench.driver import look_line  # noqa: PLC0415
    from bench.results import Look  # noqa: PLC0415

    look = Look(seeds=10, headlines={"separate": {"estimate": -0.12, "low": -0.5, "high": 0.3, "call": "inconclusive"},
                                     "joint": {"estimate": 0.2, "low": None, "high": None, "call": "underpowered"}},
                interaction={"estimate": 0.1, "low": -0.2, "high": 0.4, "call": "no detectable difference"})
    assert look_line(look, 15) == ("look at 10 seeds: separate -0.120 [-0.500, +0.300] inconclusive; joint underpowered"
                                   " (+0.200); interaction +0.100 [-0.200, +0.400] no detectable difference"
                                   " -> going on to 15 seeds")
    missing = Look(seeds=40, headlines={"a": {"call": "missing"}})
    assert look_line(missing, None) == "look at 40 seeds: a missing -> stopping here"
    assert look_line(missing, None, "interaction") == "look at 40 seeds: a missing; interaction missing -> stopping here"
