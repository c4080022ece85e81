"""How many seeds a verdict row needs: its noise split into the seed and test-set terms, read back from
results.json, and the study sizes that reach a target interval half-width or 80% power at a stated effect.

The verdict's rule (``bench.stats.median_interval``): the median over S seeds, with the sign test's
order-statistic interval [x_(k), x_(S−k+1)] over seeds, each side widened in quadrature by z·τ, where τ is
the test-set bootstrap spread of the median (every seed resamples the same examples, so more seeds do not
shrink it). A row records its per-seed values and τ (``test_sd``, also below 6 seeds, where there is no
interval yet: a 5-seed pilot can be sized). For planning, seeds are taken as spread with SD σ (their sample
SD) around the median, so

* the half-width with S seeds is hypot(σ·Φ⁻¹((S − k + 1)/(S + 1)), z·τ) (the expected order statistic's
  distance from the median); a target H below the *test-set floor* z·τ is out of reach with any number of
  seeds, and the test set must grow (τ² scales as 1/N);
* the power at a true median difference E is Φ((|E| − half-width) / SD(median)), SD(median)² =
  (1.2533·σ)²/S + τ²; 0 below 6 seeds (no distribution-free interval exists there).

The planning values are estimates from few seeds (σ̂ from 5 seeds is itself uncertain by ±30%): a plan is a
first guess that growing the study (more seeds into the same folder) corrects. tests/bench/test_power.py
checks by simulation that studies planned this way reach the target at about the stated rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from bench.stats import sign_rank

MAX_SEEDS = 1000  # beyond this a plan says "more than 1000"
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2)  # SD of a normal sample's median, in units of sigma / sqrt(S)


@dataclass(frozen=True)
class Noise:
    """One quantity's noise: its median over S seeds, the between-seed SD σ and the test-set SD τ."""

    median: float
    seeds: int
    seed_sd: float
    test_sd: float


def _z(alpha: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2))


def noise_of(per_seed: list[float], test_sd: float) -> Noise:
    """σ (the per-seed values' SD) and the test-set term τ the rule recorded (``Decision.test_sd``)."""
    x = np.asarray(per_seed, dtype=float)
    return Noise(float(np.median(x)), len(x), float(x.std(ddof=1)), float(test_sd))


def half_width(noise: Noise, seeds: int, alpha: float = 0.05) -> float:
    """The expected half-width with ``seeds`` seeds; inf where no distribution-free interval exists."""
    k = sign_rank(seeds, alpha)
    if k < 1:
        return math.inf
    seed_half = noise.seed_sd * float(sps.norm.ppf((seeds - k + 1) / (seeds + 1)))
    return math.hypot(seed_half, _z(alpha) * noise.test_sd)


def power(noise: Noise, seeds: int, effect: float, alpha: float = 0.05) -> float:
    """P(the interval excludes 0) when the true median difference is ``effect``, with ``seeds`` seeds."""
    hw = half_width(noise, seeds, alpha)
    if math.isinf(hw):
        return 0.0
    sd = math.sqrt((MEDIAN_EFFICIENCY * noise.seed_sd) ** 2 / seeds + noise.test_sd ** 2)
    return float(sps.norm.cdf((abs(effect) - hw) / sd)) if sd > 0 else float(abs(effect) > hw)


def floor(noise: Noise, alpha: float = 0.05) -> float:
    """The half-width no number of seeds goes below: the test set's own sampling error."""
    return _z(alpha) * noise.test_sd


def seeds_for_half_width(noise: Noise, target: float, alpha: float = 0.05) -> int | None:
    """The fewest seeds whose expected half-width is at most ``target``; None when the test-set floor is above it
    or it takes more than MAX_SEEDS."""
    if floor(noise, alpha) >= target:
        return None
    return next((s for s in range(2, MAX_SEEDS + 1) if half_width(noise, s, alpha) <= target), None)


def seeds_for_power(noise: Noise, effect: float, goal: float = 0.8, alpha: float = 0.05) -> int | None:
    """The fewest seeds with power ``goal`` at ``effect``; None when unreachable within MAX_SEEDS (the test-set
    term alone caps the power below the goal) or the effect is 0."""
    if effect == 0:
        return None
    return next((s for s in range(2, MAX_SEEDS + 1) if power(noise, s, effect, alpha) >= goal), None)


def test_size_factor(noise: Noise, target: float, alpha: float = 0.05) -> float | None:
    """How many times larger the test set must be for the floor to fall to half the target (so seeds can do
    the rest); None when the floor is already there."""
    f = floor(noise, alpha)
    return None if f <= target / 2 else (f / (target / 2)) ** 2


def plan_rows(results, halfwidth: float = 0.10, effect: float | None = None) -> list[dict]:
    """One row per verdict row with an interval (every pair; the headline first): its noise, the half-width it
    has and its floor, the seeds for ±``halfwidth`` and for 80% power at ``effect`` (default: its observed median),
    and the test-set growth a floor above the target needs. ``results`` is a ``bench.results.Results``."""
    rows = []
    for verdict in results.all_verdicts():
        ordered = [verdict.headline] if verdict.headline else []
        ordered += [r for r in verdict.rows if r is not verdict.headline and r != verdict.headline]
        for row in ordered:
            d = row.difference
            values = [v for v in d.per_seed.values() if v is not None]
            if d.test_sd is None or len(values) < 2:
                continue
            noise = noise_of(values, d.test_sd)
            at = abs(noise.median) if effect is None else effect
            rows.append({"pair": verdict.label or verdict.dense_task, "role": row.role,
                         "architecture": row.architecture, "ablation": row.ablation, "seeds": noise.seeds,
                         "median": noise.median, "seed_sd": noise.seed_sd, "test_sd": noise.test_sd,
                         "half_width": None if d.low is None else (d.high - d.low) / 2,
                         "floor": floor(noise, verdict.alpha),
                         "seeds_for_halfwidth": seeds_for_half_width(noise, halfwidth, verdict.alpha),
                         "effect": at, "seeds_for_power": seeds_for_power(noise, at, alpha=verdict.alpha),
                         "test_set_factor": test_size_factor(noise, halfwidth, verdict.alpha)})
    return rows


def why_no_plan(results) -> str | None:
    """Why ``plan_rows`` is empty, in one line (None when it is not)."""
    if plan_rows(results):
        return None
    if not results.all_verdicts():
        seeds = len(results.config.get("seeds", []))
        return (f"no verdict: block, so no row to size ({seeds} seed(s)); sizing plans the verdict's rows "
                "(docs/protocols.md)")
    return ("no verdict row records its test-set term (results.json from before bench 0.3.1, or fewer than 2 seeds "
            "with a value): re-assemble it with this bench (`bench run` on its folder trains nothing)")
