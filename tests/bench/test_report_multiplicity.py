"""The report's multiplicity line states the family-wise reading at the level the calls were made at (found by
review: Holm p were printed with no level beside them, so a reader could not tell that a study's second call
does not survive over its family). Read from committed studies: nothing trains."""

from __future__ import annotations

from pathlib import Path

from bench.report import multiplicity
from bench.results import load_results

REPORTS = Path(__file__).resolve().parents[2] / "reports"


def holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out here independently of bench.stats."""
    order, out, running = sorted(range(len(ps)), key=ps.__getitem__), [0.0] * len(ps), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[k]))
        out[k] = running
    return out


def test_the_family_wise_reading_is_stated_at_the_per_look_level():
    res = load_results(REPORTS / "shapes_multi_head")  # two pairs and their interaction, in seed rounds
    level = res.sequential.alpha_per_look
    names = [f"{v.label} headline" for v in res.verdicts] + ["interaction"]
    raw = [v.headline.difference.p for v in res.verdicts] + [res.interaction.difference.p]
    adjusted = dict(zip(names, holm(raw)))
    called = [f"{v.label} headline" for v in res.verdicts if v.headline.verdict in ("supported", "contradicted")]
    held = [n for n in called if adjusted[n] < level]
    lost = [n for n in called if adjusted[n] >= level]
    assert held and lost  # this study has both: the test reads a real split, not an empty one
    line = multiplicity(res)
    assert f"each called above at α = {level:g} per look" in line
    assert f"family-wise (Holm p < {level:g}) {', '.join(held)} hold" in line
    assert f"; {', '.join(lost)} do" in line and line.count(" not") >= 1


def test_no_call_made_means_no_family_wise_reading():
    line = multiplicity(load_results(REPORTS / "density_vs_detail_v2"))  # every test inconclusive
    assert "Of the calls made" not in line and "Holm over them" in line
