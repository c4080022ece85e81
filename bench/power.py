"""How many seeds a verdict row needs: its noise split into the seed and test-set terms, read back from
results.json, and the study sizes that reach a target interval half-width or 80% power at a stated effect.

The decision rule (``bench.stats.interval``) has SE(S)² = σ²/S + τ², where σ² is the variance between seeds
(estimated by the per-seed values' sample variance) and τ² the test-set sampling variance of the seed mean
(the shared bootstrap's part), which more seeds do not shrink. Both are recovered from a row's recorded
``per_seed`` values and ``se``: τ² = se² − σ²/S. So

* the half-width with S seeds is t(1 − α/2, S − 1)·SE(S); a target H below the *test-set floor*
  z(1 − α/2)·τ is out of reach with any number of seeds, and the test set must grow (τ² scales as 1/N);
* the power at a true difference E is the two-sided noncentral-t probability of a call, with noncentrality
  E / SE(S) — the same rule the verdict applies.

The planning values are estimates from few seeds (σ̂ from 5 seeds is itself uncertain by ±30%): a plan is a
first guess that growing the study (more seeds into the same folder) corrects. tests/bench/test_power.py
checks by simulation that studies planned this way reach the target at about the stated rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MAX_SEEDS = 1000  # beyond this a plan says "more than 1000"


@dataclass(frozen=True)
class Noise:
    """One quantity's noise: its mean over S seeds, the between-seed SD σ and the test-set SD τ of the mean."""

    mean: float
    seeds: int
    seed_sd: float
    test_sd: float

    def se(self, seeds: int) -> float:
        return math.sqrt(self.seed_sd ** 2 / seeds + self.test_sd ** 2)


def noise_of(per_seed: list[float], se: float) -> Noise:
    """σ and τ from a row's per-seed values and its recorded standard error (module docstring)."""
    x = np.asarray(per_seed, dtype=float)
    s = len(x)
    seed_var = float(x.var(ddof=1)) if s > 1 else 0.0
    test_var = max(se ** 2 - seed_var / s, 0.0)  # rounding in results.json can make it a hair negative
    return Noise(float(x.mean()), s, math.sqrt(seed_var), math.sqrt(test_var))


def half_width(noise: Noise, seeds: int, alpha: float = 0.05) -> float:
    return float(stats.t.ppf(1 - alpha / 2, seeds - 1)) * noise.se(seeds)


def power(noise: Noise, seeds: int, effect: float, alpha: float = 0.05) -> float:
    """P(the interval excludes 0) when the true value is ``effect``, with ``seeds`` seeds (noncentral t)."""
    df, crit = seeds - 1, float(stats.t.ppf(1 - alpha / 2, seeds - 1))
    nc = effect / noise.se(seeds)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def floor(noise: Noise, alpha: float = 0.05) -> float:
    """The half-width no number of seeds goes below: the test set's own sampling error."""
    return float(stats.norm.ppf(1 - alpha / 2)) * noise.test_sd


def seeds_for_half_width(noise: Noise, target: float, alpha: float = 0.05) -> int | None:
    """The fewest seeds (≥ 2) whose half-width is at most ``target``; None when the test-set floor is above it
    or it takes more than MAX_SEEDS."""
    if floor(noise, alpha) >= target:
        return None
    return next((s for s in range(2, MAX_SEEDS + 1) if half_width(noise, s, alpha) <= target), None)


def seeds_for_power(noise: Noise, effect: float, goal: float = 0.8, alpha: float = 0.05) -> int | None:
    """The fewest seeds (≥ 2) with power ``goal`` at ``effect``; None when unreachable within MAX_SEEDS (the
    test-set term alone caps the power below the goal) or the effect is 0."""
    if effect == 0:
        return None
    return next((s for s in range(2, MAX_SEEDS + 1) if power(noise, s, effect, alpha) >= goal), None)


def test_size_factor(noise: Noise, target: float, alpha: float = 0.05) -> float | None:
    """How many times larger the test set must be for the floor to fall to half the target (so seeds can do
    the rest); None when the floor is already there."""
    f = floor(noise, alpha)
    return None if f <= target / 2 else (f / (target / 2)) ** 2


def plan_rows(results, halfwidth: float = 0.10, effect: float | None = None) -> list[dict]:
    """One row per verdict row with values (every pair; the headline first): its noise, the half-width it has
    and its floor, the seeds for ±``halfwidth`` and for 80% power at ``effect`` (default: its observed mean),
    and the test-set growth a floor above the target needs. ``results`` is a ``bench.results.Results``."""
    rows = []
    for verdict in results.verdicts or ([results.verdict] if results.verdict else []):
        ordered = [verdict.headline] if verdict.headline else []
        ordered += [r for r in verdict.rows if r is not verdict.headline and r != verdict.headline]
        for row in ordered:
            d = row.difference
            values = [v for v in d.per_seed.values() if v is not None]
            if d.se is None or len(values) < 2:
                continue
            noise = noise_of(values, d.se)
            at = abs(noise.mean) if effect is None else effect
            rows.append({"pair": verdict.label or verdict.dense_task, "role": row.role,
                         "architecture": row.architecture, "ablation": row.ablation, "seeds": noise.seeds,
                         "mean": noise.mean, "seed_sd": noise.seed_sd, "test_sd": noise.test_sd,
                         "half_width": half_width(noise, noise.seeds, verdict.alpha),
                         "floor": floor(noise, verdict.alpha),
                         "seeds_for_halfwidth": seeds_for_half_width(noise, halfwidth, verdict.alpha),
                         "effect": at, "seeds_for_power": seeds_for_power(noise, at, alpha=verdict.alpha),
                         "test_set_factor": test_size_factor(noise, halfwidth, verdict.alpha)})
    return rows


def why_no_plan(results) -> str | None:
    """Why ``plan_rows`` is empty, in one line (None when it is not)."""
    if plan_rows(results):
        return None
    if not (results.verdicts or results.verdict):
        seeds = len(results.config.get("seeds", []))
        return (f"no verdict: block, so no row to size ({seeds} seed(s)); sizing plans the verdict's rows "
                "(docs/protocols.md)")
    return "no verdict row has 2 or more seeds with a value: the between-seed spread cannot be estimated"
