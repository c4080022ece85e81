"""Seeds until decided, calibrated: looking after every round and stopping at the first call keeps the overall
false-call rate at 5% (bench.sequential's per-look level with the verdict's rule, bench.stats.median_interval),
in the worlds of the fixed-size calibration (tests/bench/test_verdict_rule_calibration.py).

Negative control: the same looks each at 0.05 call a null study well above 5% — the reason for the per-look
level. Power and the average number of seeds used are printed beside each world.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import sequential, stats
from tests.bench.test_verdict_rule_calibration import SEED_SD, world

REPS = 500
LOOKS = sequential.look_sizes(40, 10, 5)  # 10, 15, ..., 40: the shapes_decisive plan
WORLDS = [("gauss", None, 0.0), ("skew", None, 0.0), ("cauchy", None, 0.0), ("gauss", "global", 0.2),
          ("skew", "global", 0.2), ("heavy", "global", 0.3), ("gauss", "global", 0.5)]
MC = 2.5 * np.sqrt(0.05 * 0.95 / REPS)


def run_sequential(x: np.ndarray, boots: np.ndarray, level: float, stop: str = "decided",
                   halfwidth: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per simulated study: whether it made a call and the seeds it used, looking at ``LOOKS``."""
    called, used = np.zeros(len(x), bool), np.full(len(x), LOOKS[-1])
    for r in range(len(x)):
        for n in LOOKS:
            est = stats.median_interval(x[r, :n], boots[r, :n], level)
            call = stats.call(est)
            width = None if est.low is None else (est.high - est.low) / 2
            if sequential.should_stop([(call, width)], stop, halfwidth) or n == LOOKS[-1]:
                called[r], used[r] = call != "inconclusive", n
                break
    return called, used


def test_the_looks_are_the_planned_ones():
    assert LOOKS == [10, 15, 20, 25, 30, 35, 40]
    assert sequential.look_sizes(12, 10, 5) == [10, 12] and sequential.look_sizes(10, 10, 5) == [10]
    assert sequential.look_alpha(0.05, 7, "decided") == 0.0130 and sequential.look_alpha(0.05, 7, "halfwidth") == 0.05


@pytest.mark.parametrize("kind, side, pi", WORLDS)
def test_stopping_when_decided_keeps_false_calls_at_five_percent(kind, side, pi):
    rng = np.random.default_rng(len(kind) * 10 + int(pi * 10))
    level = sequential.look_alpha(0.05, len(LOOKS), "decided")
    for test_sd in (0.01, 0.06):
        called, used = run_sequential(*world(rng, kind, side, pi, LOOKS[-1], REPS, test_sd), level)
        hit, hit_used = run_sequential(*world(rng, kind, side, pi, LOOKS[-1], 100, test_sd, effect=SEED_SD), level)
        print(f"{kind} collapse={side}:{pi} test_sd={test_sd}: false {called.mean():.3f}; at an effect of one seed "
              f"SD: power {hit.mean():.2f}, mean seeds {hit_used.mean():.1f}")
        assert called.mean() <= 0.05 + MC, (kind, side, pi, test_sd, called.mean())


def test_looking_at_full_alpha_every_time_inflates_false_calls():
    rng = np.random.default_rng(99)
    called, _ = run_sequential(*world(rng, "gauss", None, 0.0, LOOKS[-1], REPS, 0.01), 0.05)
    print(f"seven looks at 0.05 each: false {called.mean():.3f}")
    assert called.mean() > 0.05 + MC


def test_stopping_on_the_half_width_keeps_the_fixed_level():
    """The half-width does not depend on the sign of the effect: stopping on it leaves the call at alpha."""
    rng = np.random.default_rng(5)
    called, used = run_sequential(*world(rng, "skew", "global", 0.2, LOOKS[-1], REPS, 0.01), 0.05, "halfwidth", 0.15)
    print(f"stop on half-width 0.15: false {called.mean():.3f}, mean seeds {used.mean():.1f}")
    assert called.mean() <= 0.05 + MC and used.mean() < LOOKS[-1]



INTERACTION_WORLDS = [(("skew", "global", 0.2), ("skew", "global", 0.2)), (("gauss", None, 0.0), ("heavy", "global", 0.3)),
                      (("skew", None, 0.0), ("cauchy", None, 0.0))]


@pytest.mark.parametrize("first_world, second_world", INTERACTION_WORLDS)
def test_stopping_when_the_interaction_is_decided_keeps_false_calls_at_five_percent(first_world, second_world):
    """``stop: interaction``: the driver looks at the per-seed difference of two pairs' series, replicate k minus
    replicate k (bench.verdict._interaction), with the same rule at Pocock's level. Null: each pair carries an
    effect of one seed SD (each supported on its own), in skewed, collapsing or heavy-tailed worlds, shifted so
    the per-seed interaction has population median 0."""
    rng = np.random.default_rng(len(first_world[0]) * 10 + len(second_world[0]))
    level = sequential.look_alpha(0.05, len(LOOKS), "interaction")
    assert level == sequential.look_alpha(0.05, len(LOOKS), "decided") < 0.05
    big_a, big_b = (world(rng, *w, 20_000, 1, 0.0, effect=SEED_SD)[0] for w in (first_world, second_world))
    null = float(np.median(big_b - big_a))
    a, b = (world(rng, *w, LOOKS[-1], REPS, 0.03, effect=SEED_SD) for w in (first_world, second_world))
    called, used = run_sequential(b[0] - a[0] - null, b[1] - a[1] - null, level, "interaction")
    print(f"interaction {first_world} vs {second_world}: false {called.mean():.3f}, mean seeds {used.mean():.1f}")
    assert called.mean() <= 0.05 + MC
