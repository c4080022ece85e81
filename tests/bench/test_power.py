"""Study sizing (bench.power) checked against the decision rule it plans for (bench.stats.median_interval/call).

- Identity: the test-set term a row records is the rule's (the bootstrap spread of the median over seeds),
  and the seed term is the per-seed values' spread.
- Simulation: studies planned for 80% power at an effect call it at about 80%; studies planned for a
  half-width reach it on average; a target below the test-set floor is reported unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import power, stats
from bench.results import load_results

ROOT = Path(__file__).resolve().parents[2]
B = 400


def study(rng: np.random.Generator, seeds: int, effect: float, seed_sd: float, test_sd: float):
    """Per-seed values and replicates whose seed and test-set terms are ``seed_sd`` and ``test_sd``: a common
    test-set shift (the shared test set) and its bootstrap deviations, shared by every seed."""
    x = effect + rng.normal(0, seed_sd, seeds) + rng.normal(0, test_sd)
    boots = x[:, None] + rng.normal(0, test_sd, B)[None, :]
    return x, boots


def test_the_terms_read_back_are_the_ones_the_rule_combined():
    rng = np.random.default_rng(0)
    x, boots = study(rng, 7, 0.1, 0.2, 0.05)
    est = stats.median_interval(x, boots)
    noise = power.noise_of(list(x), est.test_sd)
    assert noise.seed_sd == pytest.approx(x.std(ddof=1), rel=1e-9)
    assert noise.test_sd == pytest.approx(np.median(boots, 0).std(ddof=1), rel=1e-9)
    k = stats.sign_rank(7, 0.05)
    xs = np.sort(x)
    assert est.low == pytest.approx(est.estimate - np.hypot(est.estimate - xs[k - 1], 1.959964 * noise.test_sd))
    five = stats.median_interval(x[:5], boots[:5])  # no interval below 6 seeds, but a pilot can still be sized
    assert five.low is None and five.test_sd == pytest.approx(np.median(boots[:5], 0).std(ddof=1))


@pytest.mark.parametrize("seed_sd,test_sd,effect", [(0.2, 0.02, 0.15), (0.4, 0.05, 0.3)])
def test_a_study_planned_for_80_percent_power_calls_at_about_80_percent(seed_sd, test_sd, effect):
    noise = power.Noise(effect, 5, seed_sd, test_sd)
    seeds = power.seeds_for_power(noise, effect)
    assert seeds is not None and seeds >= 6
    rng = np.random.default_rng(seeds)
    reps = 1000
    calls = sum(stats.call(stats.median_interval(*study(rng, seeds, effect, seed_sd, test_sd))) == "supported"
                for _ in range(reps))
    print(f"planned {seeds} seeds for 80% power at {effect}: called {calls / reps:.3f}")
    assert 0.72 <= calls / reps <= 0.92  # a normal approximation to a discrete order statistic: within ~0.1
    assert power.power(noise, seeds - 1, effect) < 0.8  # the fewest that reach it


def test_a_study_planned_for_a_half_width_reaches_it_on_average_and_a_floor_is_unreachable():
    noise = power.Noise(0.0, 5, 0.25, 0.02)
    seeds = power.seeds_for_half_width(noise, 0.10)
    rng = np.random.default_rng(1)
    widths = [(lambda e: (e.high - e.low) / 2)(stats.median_interval(*study(rng, seeds, 0.0, 0.25, 0.02)))
              for _ in range(1000)]
    print(f"planned {seeds} seeds for +-0.10: mean half-width {np.mean(widths):.4f}")
    assert 0.09 <= np.mean(widths) <= 0.11
    assert power.half_width(noise, seeds - 1) > 0.10
    assert power.half_width(noise, 5) == float("inf") and power.power(noise, 5, 1.0) == 0.0
    floored = power.Noise(0.0, 5, 0.25, 0.06)  # 1.96 * 0.06 = 0.118 > 0.10
    assert power.seeds_for_half_width(floored, 0.10) is None
    assert power.test_size_factor(floored, 0.10) == pytest.approx((power.floor(floored) / 0.05) ** 2)


@pytest.mark.parametrize("report", sorted(p.parent.name for p in (ROOT / "reports").glob("*/results.json")))
def test_every_committed_study_has_a_plan_for_its_headline(report):
    results = load_results(ROOT / "reports" / report)
    rows = power.plan_rows(results)
    data = json.loads((ROOT / "reports" / report / "results.json").read_text())
    if not (data["verdict"] or data["verdicts"]):  # the single-seed CIFAR replications: said why, in one line
        assert not rows and "no verdict: block" in power.why_no_plan(results)
        return
    assert rows and rows[0]["role"] == "headline" and power.why_no_plan(results) is None
    verdict = data["verdicts"][0] if data["verdicts"] else data["verdict"]
    assert rows[0]["seeds"] == len([v for v in verdict["headline"]["difference"]["per_seed"].values()
                                    if v is not None])
