"""The verdict's decision rule is calibrated: under the null it calls supported/contradicted at most 5%.

Drives the project's own code — ``bench.metrics.shared_weights`` (the bootstrap resamples every seed
shares) and ``bench.stats.interval``/``call`` (the headline's rule) — on simulated per-example values
v[s, i] = effect + a_s + b_i + e[s, i]: a seed effect a_s (weight init, data order), an example effect
b_i shared by every seed (the test set is shared), and seed-specific noise e. The seed-to-test
variance ratio is Var(a) / Var(one seed's test-set mean). A row's statistic is the seed's mean over
examples; its replicates reweight the same examples with the shared weights, as the runner does.

The test fails if the rule is broken: e.g. a t-interval over seeds alone (no test-set term) called
14–42% false at these points, Welch–Satterthwaite degrees of freedom 7.5–9.3% at 3 seeds (measured
while choosing the rule).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import stats
from bench.metrics import shared_weights

N, B, REPS = 200, 400, 1000
RATIOS = (0.3, 1.0, 3.0, 10.0)
SEEDS = (3, 5, 10)


def false_call_rate(rng: np.random.Generator, s: int, ratio: float, effect: float = 0.0, reps: int = REPS,
                    test_term: bool = True) -> float:
    w = shared_weights(N, B) / N  # (B, N): the runner's resamples, as means
    test_sd = np.sqrt(2.0 / N)  # sd of one seed's test-set mean (Var b = Var e = 1)
    a = rng.normal(0, np.sqrt(ratio) * test_sd, (reps, s, 1))
    v = effect + a + rng.normal(0, 1, (reps, 1, N)) + rng.normal(0, 1, (reps, s, N))
    points, boots = v.mean(2), v @ w.T  # (reps, S), (reps, S, B)
    if not test_term:  # the negative control: replicates without spread = an interval over seeds alone
        boots = np.zeros_like(boots)
    calls = sum(stats.call(stats.interval(points[r], boots[r])) != "inconclusive" for r in range(reps))
    return calls / reps


@pytest.mark.parametrize("s", SEEDS)
def test_false_calls_under_the_null_stay_at_or_below_five_percent(s):
    rng = np.random.default_rng(s)
    rates = [false_call_rate(rng, s, r) for r in RATIOS]
    mc = 2.5 * np.sqrt(0.05 * 0.95 / REPS)  # Monte-Carlo error allowance at the nominal 5%
    print(f"S={s}: false call rate at ratios {RATIOS}: {rates}")
    assert max(rates) <= 0.05 + mc, rates


def test_power_at_a_stated_effect_grows_with_seeds():
    """Power at a true difference of 2 sd of one seed's total error (seed + test): reported, and it must
    grow with seeds and be substantial at 10 (a rule that never calls would pass the null test)."""
    rng = np.random.default_rng(42)
    ratio = 1.0
    effect = 2 * np.sqrt((1 + ratio) * 2.0 / N)
    power = {s: false_call_rate(rng, s, ratio, effect, reps=300) for s in SEEDS}
    print(f"power at effect {effect:.3f} (2 sd), seed/test ratio {ratio}: {power}")
    assert power[3] < power[5] < power[10] and power[10] > 0.8, power


def test_holm_adjusts_step_down():
    assert stats.holm([0.01, 0.04, None, 0.03]) == [0.03, 0.06, None, 0.06]


def test_the_calibration_test_catches_a_rule_that_ignores_the_shared_test_set():
    """Negative control: the same simulation with the test-set term removed (a t-interval over seeds alone)
    calls far more than 5% at a low seed-to-test ratio — so the test above can fail."""
    rate = false_call_rate(np.random.default_rng(7), 10, 0.3, reps=400, test_term=False)
    assert rate > 0.15, rate


def test_the_call_order_and_holm_in_the_verdict():
    """bench.verdict._decide/_call: too few seeds -> underpowered before anything else; a failed conditioning
    check -> ill-conditioned; the headline is called from its interval, exploratory rows from Holm's p;
    non-identity families never say supported/contradicted."""
    from bench.results import Conditioning, Decision, VerdictRow
    from bench.verdict import _decide

    def row(role, family, est, low, high, p, seeds=8, ok=True):
        d = Decision(estimate=est, low=low, high=high, p=p)
        return VerdictRow(family=family, role=role, architecture="a", ablation="x", seeds=seeds, dense=d, global_=d,
                          difference=d, conditioning=Conditioning(threshold=0.1, dense_margin=None, global_margin=None,
                                                                  ok=ok, note=""), verdict="inconclusive")

    rows = [row("headline", "identity", 0.3, 0.1, 0.5, 0.01),
            row("exploratory", "identity", 0.3, 0.05, 0.5, 0.02),  # Holm with the next: 0.04 < 0.05
            row("exploratory", "identity", -0.3, -0.5, -0.1, 0.01),
            row("exploratory", "ensemble", 0.4, 0.2, 0.6, 0.001),
            row("headline", "identity", 0.3, 0.1, 0.5, 0.01, seeds=3, ok=False),
            row("headline", "identity", 0.3, 0.1, 0.5, 0.01, ok=False)]
    calls = [r.verdict for r in _decide(rows, alpha=0.05, min_seeds=5)]
    assert calls == ["supported", "supported", "contradicted", "dense higher", "underpowered", "ill-conditioned"]
    assert [r.p_holm for r in _decide(rows[:3], 0.05, 5)] == [None, 0.02, 0.02]
