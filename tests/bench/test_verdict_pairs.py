"""Several verdict pairs (one per evidence scale) and their interaction; the single-pair form unchanged."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from bench import stats
from bench.config import load_config
from bench.errors import BenchError
from bench.report import explanation, pairs_section
from bench.results import Conditioning, Decision, Results, Verdict, VerdictRow
from bench.verdict import Evidence, _across_pairs, _decide, _interaction

BASE = """
tasks:
  cs: {name: synthetic_detail, target: pixel, evidence: coarse, n_train: 32, n_test: 16}
  cc: {name: synthetic_detail, target: image, evidence: coarse, n_train: 32, n_test: 16}
  fs: {name: synthetic_detail, target: pixel, evidence: fine, n_train: 32, n_test: 16}
  fc: {name: synthetic_detail, target: image, evidence: fine, n_train: 32, n_test: 16}
architectures:
  unet: {name: unet, depth: 2, width: 4}
ablations: [{name: skip_removal}]
"""
PAIRS = """verdict:
  - {label: coarse, dense: cs, global: cc, architecture: unet}
  - {label: LABEL2, dense: fs, global: fc, architecture: unet}
"""


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_a_list_of_pairs_resolves_and_the_single_form_still_does(tmp_path):
    pairs = load_config(write(tmp_path, BASE + PAIRS.replace("LABEL2", "fine")))
    assert [s.label for s in pairs.verdict_pairs()] == ["coarse", "fine"]
    single = load_config(write(tmp_path, BASE + "verdict: {dense: cs, global: cc}\n"))
    assert [s.dense for s in single.verdict_pairs()] == ["cs"]


@pytest.mark.parametrize("text, message", [
    (PAIRS.replace("LABEL2", "coarse"), r"verdict: two pairs share the label"),
    (PAIRS.replace("LABEL2", "fine").replace("global: fc", "global: nope"), r"verdict\.1\.global: unknown task alias"),
    (PAIRS.replace("LABEL2", "fine").replace("label: coarse", "labl: coarse"), r"verdict\.0\.labl: unknown key"),
])
def test_pair_errors_name_the_pair(tmp_path, text, message):
    with pytest.raises(BenchError, match=message):
        load_config(write(tmp_path, BASE + text))


def _decision(x: list[float]) -> Decision:
    return Decision(estimate=float(np.mean(x)), low=None, high=None, per_seed={str(i): v for i, v in enumerate(x)})


def _verdict(label: str, call: str = "inconclusive", ok: bool = True, seeds: int = 8) -> Verdict:
    d = _decision([0.0] * seeds)
    row = VerdictRow(family="identity", role="headline", architecture="unet", ablation="skip_removal", seeds=seeds,
                     dense=d, global_=d, difference=d, verdict=call,
                     conditioning=Conditioning(threshold=0.1, dense_margin=d, global_margin=d, ok=ok, note="n"))
    return Verdict(label=label, dense_task=f"{label}_seg", global_task=f"{label}_cls", alpha=0.05, min_seeds=5,
                   headline=row, rows=[row], method="m")


def _series(values: list[float], sd: float, seed: int, b: int = 2000) -> dict:
    rng = np.random.default_rng(seed)
    return {s: (v, v + sd * rng.standard_normal(b)) for s, v in enumerate(values)}


def test_interaction_is_the_per_seed_difference_of_differences_with_independent_variances_added():
    coarse = _series([0.10, 0.12, 0.08, 0.11, 0.09, 0.10, 0.13, 0.07], sd=0.05, seed=1)
    fine = _series([0.40, 0.35, 0.45, 0.38, 0.42, 0.41, 0.37, 0.44], sd=0.05, seed=2)
    out = _interaction((_verdict("coarse", seeds=8), coarse), (_verdict("fine", seeds=8), fine), "skip_removal", "unet")
    per_seed = [fine[s][0] - coarse[s][0] for s in range(8)]
    assert out.difference.per_seed == {str(s): pytest.approx(v, abs=1e-6) for s, v in enumerate(per_seed)}
    # the verdict's rule on the per-seed difference of differences, replicate b minus replicate b: independent
    # replicate arrays, so the test-set term holds both pairs' spread (not 0, as a paired difference would give)
    boots = np.stack([fine[s][1] - coarse[s][1] for s in range(8)])
    want = stats.median_interval(np.array(per_seed), boots)
    assert (out.difference.estimate, out.difference.low, out.difference.high) == pytest.approx(
        (want.estimate, want.low, want.high), abs=1e-6)
    assert out.difference.estimate == pytest.approx(np.median(per_seed), abs=1e-6)
    assert np.median(boots, 0).std() == pytest.approx(0.05 * np.sqrt(2) * 1.2533 / np.sqrt(8), rel=0.25)
    assert (out.first, out.second, out.call) == ("coarse", "fine", "second higher")


@pytest.mark.parametrize("coarse_kw, fine_kw, seeds, call", [
    ({}, {}, 8, "no detectable difference"),  # same values in both: interval across 0
    ({"ok": False}, {}, 8, "ill-conditioned"),
    ({}, {}, 5, "underpowered"),  # no distribution-free interval below 6 seeds, whatever min_seeds says
    ({}, {}, 3, "underpowered"),
])
def test_interaction_calls(coarse_kw, fine_kw, seeds, call):
    vals = [0.1, 0.3, 0.2, 0.25, 0.15, 0.22, 0.18, 0.27][:seeds]
    a = (_verdict("coarse", seeds=seeds, **coarse_kw), _series(vals, 0.05, 1))
    b = (_verdict("fine", seeds=seeds, **fine_kw), _series(vals, 0.05, 2))
    assert _interaction(a, b, "skip_removal", "unet").call == call


def test_an_interaction_with_a_non_finite_seed_is_undefined_not_no_difference():
    """A seed whose D is undefined (a baseline at chance: inf) leaves the rule without an interval: the call says
    so, instead of "no detectable difference" (which a stop: interaction study would read as 'not decided')."""
    coarse = _series([0.1] * 8, sd=0.02, seed=1)
    fine = _series([1.1] * 8, sd=0.02, seed=2)
    decided = _interaction((_verdict("coarse"), coarse), (_verdict("fine"), fine), "skip_removal", "unet")
    assert decided.call == "second higher"
    coarse[3] = (float("inf"), coarse[3][1])
    out = _interaction((_verdict("coarse"), coarse), (_verdict("fine"), fine), "skip_removal", "unet")
    assert out.call == "undefined" and "seed(s) 3 have no finite value" in out.note
    res = Results.model_construct(verdicts=[_verdict("coarse"), _verdict("fine")], interaction=out)
    assert "cannot tell — the interaction is undefined" in explanation(res)


@pytest.mark.parametrize("coarse_call, shift, favoured", [
    # the generic report reads the two pairs by their labels; a study's hypotheses (density: a gap with coarse
    # evidence and no interaction; detail: the gap grows with fine) are read off this line in its config
    ("supported", 0.0, "`coarse` is **supported** and `fine` is **contradicted**, and the dense − global gap does "
                       "not detectably differ"),
    ("inconclusive", 0.3, "`coarse` is **inconclusive** and `fine` is **contradicted**, and the dense − global gap "
                          "is larger with `fine` than with `coarse`"),
    ("supported", 0.3, "`coarse` is **supported** and `fine` is **contradicted**, and the dense − global gap is "
                       "larger with `fine`"),
    ("inconclusive", -0.3, "the dense − global gap is larger with `coarse` than with `fine`"),
])
def test_report_reads_the_two_pairs_by_their_labels(coarse_call, shift, favoured):
    vals = [0.1, 0.3, 0.2, 0.25, 0.15, 0.22, 0.18, 0.27]
    a, b = _verdict("coarse", call=coarse_call), _verdict("fine", call="contradicted")  # both calls are read
    inter = _interaction((a, _series(vals, 0.02, 1)), (b, _series([v + shift for v in vals], 0.02, 2)),
                         "skip_removal", "unet")
    res = Results.model_construct(verdicts=[a, b], interaction=inter)
    assert favoured in explanation(res)
    assert "density" not in explanation(res) and "detail" not in explanation(res)  # no study's words
    text = pairs_section(res)
    assert "| coarse | coarse_seg | coarse_cls |" in text and "Interaction (skip_removal on unet)" in text


def test_single_pair_results_render_no_pairs_section():
    assert pairs_section(Results.model_construct(verdicts=[], interaction=None)) == ""


def test_the_report_shows_every_pairs_rows_not_only_the_first():
    from bench.report import verdict_section

    a, b = _verdict("coarse"), _verdict("fine", call="supported")
    b.rows = [b.rows[0].model_copy(update={"role": "exploratory", "ablation": "skip_lesion", "verdict": "supported"})]
    text = verdict_section(Results.model_construct(verdict=a, verdicts=[a, b], interaction=None))
    assert "Identity family — decides the claim — pair `coarse` (coarse_seg vs coarse_cls)" in text
    assert "pair `fine` (fine_seg vs fine_cls)" in text
    assert "| unet | skip_lesion | exploratory |" in text  # the second pair's row, not only its headline
    single = verdict_section(Results.model_construct(verdict=a, verdicts=[], interaction=None))
    assert "pair `" not in single and "### Identity family — decides the claim\n" in single


def _with_exploratory(label: str, p: float) -> Verdict:
    v = _verdict(label)
    d = Decision(estimate=0.3, low=0.01, high=0.6, p=p, per_seed={str(i): 0.3 for i in range(8)})
    row = v.headline.model_copy(update={"role": "exploratory", "ablation": "skip_lesion", "difference": d})
    return v.model_copy(update={"rows": [v.headline, row]})


def test_exploratory_rows_pay_for_every_pair_not_only_their_own():
    # one exploratory row per pair at p = 0.03: alone each is supported (Holm of one p is the p), but the
    # study asked the question twice, so Holm over both gives 0.06 and neither is called
    alone = _decide(_with_exploratory("coarse", 0.03).rows, 0.05, 5)
    assert alone[1].verdict == "supported" and alone[1].p_holm == pytest.approx(0.03)
    both = _across_pairs([(_with_exploratory("coarse", 0.03), {}), (_with_exploratory("fine", 0.03), {})])
    for v, _ in both:
        assert v.rows[1].p_holm == pytest.approx(0.06) and v.rows[1].verdict == "inconclusive"
        assert v.headline is v.rows[0] or v.headline == v.rows[0]


def test_compute_verdicts_pools_holm_across_the_pairs(monkeypatch):
    import bench.verdict as verdict
    from bench.config import StudyConfig

    seen = []
    monkeypatch.setattr(verdict, "_across_pairs", lambda done: seen.append(len(done)) or done)
    cfg = StudyConfig.model_validate({
        "verdict": [{"label": "a", "dense": "x", "global": "y", "ablation": "skip_removal", "architecture": "u"},
                    {"label": "b", "dense": "x", "global": "y", "ablation": "skip_removal", "architecture": "u"}],
        "tasks": {"x": {"name": "t"}, "y": {"name": "t"}}, "architectures": {"u": {"name": "unet"}}, "seeds": [0],
        "bootstrap": 100})
    verdict.compute_verdicts(cfg, Evidence(cells=[], comparisons=[], arrays={}, dependence_boots={}, infos={}), {})
    assert seen == [2]


def test_pairs_must_share_alpha(tmp_path):
    text = PAIRS.replace("LABEL2", "fine").replace("architecture: unet}\n", "architecture: unet, alpha: 0.1}\n", 1)
    with pytest.raises(BenchError, match=r"verdict: the pairs' alpha differ \(\[0\.05, 0\.1\]\); give every pair"):
        load_config(write(tmp_path, BASE + text))


def test_the_run_summary_prints_every_pairs_headline_and_the_interaction(tmp_path):
    # `bench run`'s last lines used to name the first pair only: a two-level study's second verdict was in
    # report.md alone
    from bench.report import run_summary

    a, b = _verdict("coarse"), _verdict("fine", call="supported")
    vals = [0.1, 0.3, 0.2, 0.25, 0.15, 0.22, 0.18, 0.27]
    inter = _interaction((a, _series(vals, 0.02, 1)), (b, _series([v + 0.3 for v in vals], 0.02, 2)),
                         "skip_removal", "unet")
    res = Results.model_construct(verdict=a, verdicts=[a, b], interaction=inter, cells=[], comparisons=[])
    text = run_summary(res, tmp_path)
    assert "verdict [coarse]: INCONCLUSIVE — skip_removal on unet: median D(coarse_seg) − D(coarse_cls)" in text
    assert "verdict [fine]: SUPPORTED — skip_removal on unet: median D(fine_seg) − D(fine_cls)" in text
    assert "interaction (fine − coarse, skip_removal on unet): " in text and f"-> {inter.call}" in text
    one = a.model_copy(update={"label": None})  # a config with one pair: no label
    single = run_summary(Results.model_construct(verdict=one, verdicts=[], interaction=None, cells=[],
                                                 comparisons=[]), tmp_path)
    assert single.startswith("verdict: INCONCLUSIVE — ") and "interaction" not in single


def test_a_row_several_pairs_share_is_one_test_in_the_holm_family():
    # pairs on the same dense and global tasks list the same exploratory rows: counting each once per pair
    # made four pairs pay Holm over four copies of one test (0.03 -> 0.12), so no exploratory row could call
    same = [_with_exploratory("shapes", 0.03).model_copy(update={"label": f"pair{i}"}) for i in range(4)]
    for v, _ in _across_pairs([(v, {}) for v in same]):
        assert v.rows[1].p_holm == pytest.approx(0.03) and v.rows[1].verdict == "supported"


def test_more_than_two_pairs_get_the_interaction_of_every_two_that_share_a_headline_ablation(monkeypatch):
    import bench.verdict as verdict
    from bench.config import StudyConfig

    vals = [0.1, 0.3, 0.2, 0.25, 0.15, 0.22, 0.18, 0.27]
    shifts = {"u": 0.0, "v": 0.4, "ut": 0.0, "vt": -0.4}
    monkeypatch.setattr(verdict, "_pair_verdict", lambda spec, *a: (
        _verdict(spec.label, call="supported"), _series([x + shifts[spec.label] for x in vals], 0.02, 1)))
    pairs = [("u", "skip_removal", "unet"), ("v", "skip_removal", "vit"), ("ut", "skip_lesion", "unet"),
             ("vt", "skip_lesion", "vit")]
    cfg = StudyConfig.model_validate({
        "verdict": [{"label": lab, "dense": "x", "global": "y", "ablation": abl, "architecture": arch}
                    for lab, abl, arch in pairs],
        "tasks": {"x": {"name": "t"}, "y": {"name": "t"}},
        "architectures": {"unet": {"name": "unet"}, "vit": {"name": "vit"}},
        "ablations": [{"name": "skip_removal"}, {"name": "skip_lesion"}], "seeds": [0], "bootstrap": 100})
    ev = Evidence(cells=[], comparisons=[], arrays={}, dependence_boots={}, infos={})
    _, verdicts, interaction, interactions = verdict.compute_verdicts(cfg, ev, {})
    assert len(verdicts) == 4 and interaction is None
    assert [(i.first, i.second, i.ablation, i.architecture) for i in interactions] == [
        ("u", "v", "skip_removal", "unet → vit"), ("ut", "vt", "skip_lesion", "unet → vit")]
    assert interactions[0].difference.estimate == pytest.approx(0.4, abs=1e-6)
    assert interactions[1].difference.estimate == pytest.approx(-0.4, abs=1e-6)
    res = Results.model_construct(verdict=verdicts[0], verdicts=verdicts, interaction=None,
                                  interactions=interactions)
    text = pairs_section(res)
    assert "(D_dense − D_global)[v] − (D_dense − D_global)[u]" in text and "[vt] − (D_dense − D_global)[ut]" in text
    assert "interaction v − u" in text and "interaction vt − ut" in text  # in the multiplicity line
