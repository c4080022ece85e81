"""The verdict's decision rule: an interval over seeds AND test examples, and Holm's correction.

Input for one quantity (e.g. D_dense − D_global of one architecture and ablation): per-seed point
estimates ``x`` (S,) and per-seed bootstrap replicates ``boots`` (S, B), where replicate b resamples
the SAME test examples in every seed (``bench.metrics.shared_weights``). The standard error combines

* the spread between seeds, s²/S (the unit of replication: weight init, data order, augmentation), and
* the test-set sampling error of the seed mean, Var_b(mean_s boots[s, b]) — the test set is shared by
  every seed, so this part does not shrink with more seeds.

SE² = s²/S + Var_b; the 95% interval is mean ± t(0.975, S − 1)·SE, and p the two-sided t-test of 0.
The seed-specific part of the test noise appears in both terms (conservative), and S − 1 degrees of
freedom ignore the many test examples (conservative again): Welch–Satterthwaite degrees of freedom
called 7–9% false "supported/contradicted" at 3 seeds when seeds dominate, this rule stays under 5% at
every simulated point (tests/bench/test_verdict_calibration.py drives this very function).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its interval and two-sided p against 0."""

    estimate: float | None
    low: float | None
    high: float | None
    se: float | None
    df: int | None
    p: float | None
    dropped_replicates: int = 0  # bootstrap replicates with a non-finite value in some seed (D undefined there)
    test_sd: float | None = None  # median rule: the test-set bootstrap spread of the median (bench.power reads it)


def _seeds_and_replicates(x, boots) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per-seed values and their (S, B) replicates as float arrays, the replicate columns finite in every seed,
    and how many are not (D undefined in some seed there: left out, and counted)."""
    x = np.asarray(x, dtype=float)
    boots = np.atleast_2d(np.asarray(boots, dtype=float))
    finite = np.isfinite(boots).all(0)
    return x, boots, finite, int((~finite).sum())


def interval(x: np.ndarray, boots: np.ndarray, alpha: float = 0.05) -> Estimate:
    """Mean of ``x`` over seeds, its (1 − alpha) interval and p (module docstring). Fewer than 2 seeds
    or no finite replicate: the estimate alone."""
    x, boots, finite, dropped = _seeds_and_replicates(x, boots)
    if not len(x) or not np.isfinite(x).all():
        return Estimate(None, None, None, None, None, None, dropped)
    mean = float(x.mean())
    s = len(x)
    if s < 2 or finite.sum() < 2:
        return Estimate(mean, None, None, None, None, None, dropped)
    se = float(np.sqrt(x.var(ddof=1) / s + boots[:, finite].mean(0).var(ddof=1)))
    df = s - 1
    if se == 0:
        return Estimate(mean, mean, mean, 0.0, df, 0.0 if mean != 0 else 1.0, dropped)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return Estimate(mean, mean - half, mean + half, se, df, p, dropped)


@cache
def _sign_cdf(seeds: int) -> tuple[float, ...]:
    """P(Binomial(seeds, ½) ≤ j) for j = 0..seeds."""
    return tuple(float(v) for v in stats.binom.cdf(np.arange(seeds + 1), seeds, 0.5))


@cache
def sign_rank(seeds: int, alpha: float) -> int:
    """k such that [x_(k), x_(S−k+1)] covers the median of any continuous distribution with probability
    ≥ 1 − alpha (the sign test's order statistics); 0 when no k does (S ≤ 5 at alpha = 0.05)."""
    k = int(stats.binom.ppf(alpha / 2, seeds, 0.5))
    while k >= 1 and stats.binom.cdf(k - 1, seeds, 0.5) > alpha / 2:
        k -= 1
    while stats.binom.cdf(k, seeds, 0.5) <= alpha / 2:
        k += 1
    return k


def median_interval(x: np.ndarray, boots: np.ndarray, alpha: float = 0.05) -> Estimate:
    """The median over seeds of ``x`` and its (1 − alpha) interval; the verdict's rule (docs/protocols.md).

    Seeds: the sign test's order-statistic interval, which holds for ANY distribution of the per-seed values
    (bimodal when some seeds' networks collapse, skewed, heavy-tailed: the worlds real studies produce).
    Test set: the spread over bootstrap replicates of the median over seeds (every seed resamples the same
    examples). The two half-widths add in quadrature on each side. ``se`` is the half-width over z(1 − alpha/2)
    and ``p`` the smallest alpha whose interval excludes 0. Fewer seeds than a distribution-free interval needs
    (6 at alpha = 0.05): the estimate alone."""
    x, boots, finite, dropped = _seeds_and_replicates(x, boots)
    if not len(x) or not np.isfinite(x).all():
        return Estimate(None, None, None, None, None, None, dropped)
    med = float(np.median(x))
    if finite.sum() < 2:
        return Estimate(med, None, None, None, None, None, dropped)
    test_sd = float(np.median(boots[:, finite], axis=0).std(ddof=1))
    if sign_rank(len(x), alpha) < 1:  # the test-set term is still known: a pilot of 5 seeds can be sized
        return Estimate(med, None, None, None, None, None, dropped, test_sd)
    low, high = _median_bounds(np.sort(x), med, test_sd, alpha)
    z = float(stats.norm.ppf(1 - alpha / 2))
    return Estimate(med, low, high, (high - low) / (2 * z), None, _median_p(np.sort(x), med, test_sd), dropped,
                    test_sd)


def _median_bounds(xs: np.ndarray, med: float, test_sd: float, alpha: float) -> tuple[float, float]:
    k = sign_rank(len(xs), alpha)
    if k < 1:
        return -np.inf, np.inf
    z = float(stats.norm.ppf(1 - alpha / 2))
    return (med - float(np.hypot(med - xs[k - 1], z * test_sd)),
            med + float(np.hypot(xs[len(xs) - k] - med, z * test_sd)))


def _median_p(xs: np.ndarray, med: float, test_sd: float) -> float:
    """The smallest alpha at which ``_median_bounds`` excludes 0, in closed form: for alpha in
    [2F(k−1), 2F(k)) (F the Binomial(S, ½) cdf) the interval uses x_(k), and it excludes 0 from below once
    z(1 − alpha/2)·test_sd < sqrt(med² − (med − x_(k))²); the same from above on −x."""
    best = 1.0
    cdf = _sign_cdf(len(xs))
    for side in (xs, -xs[::-1]):
        m = med if side is xs else -med
        if m <= 0:
            continue
        for k in range(1, len(side) // 2 + 1):
            lo_k = float(side[k - 1])
            if lo_k <= 0:
                continue  # this k's interval reaches 0 (its lower order statistic is not above it)
            room = m * m - (m - lo_k) ** 2
            alpha_z = 0.0 if test_sd == 0 else math.erfc(math.sqrt(max(room, 0.0)) / test_sd / math.sqrt(2))
            start, stop = 2 * cdf[k - 1], 2 * cdf[k]
            candidate = max(start, alpha_z)
            if candidate < stop:
                best = min(best, candidate)
    return min(best, 1.0)


def call(est: Estimate) -> str:
    """supported / contradicted when the whole interval is above / below 0; else inconclusive."""
    if est.low is not None and est.low > 0:
        return "supported"
    if est.high is not None and est.high < 0:
        return "contradicted"
    return "inconclusive"


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values (family-wise error control); None stays None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def percentile_interval(estimate: float | None, boot: np.ndarray | None) -> dict[str, float | None]:
    """``{estimate, low, high}``: a point value with the 2.5/97.5 percentiles of its finite bootstrap
    replicates (one cell's interval over test examples; rounded as results.json stores numbers)."""
    if estimate is None or not np.isfinite(estimate):
        return {"estimate": None, "low": None, "high": None}
    b = np.asarray(boot, dtype=float) if boot is not None else np.empty(0)
    b = b[np.isfinite(b)]
    if boot is None or not len(b):
        return {"estimate": round(float(estimate), 6), "low": None, "high": None}
    lo, hi = np.percentile(b, [2.5, 97.5])
    return {"estimate": round(float(estimate), 6), "low": round(float(lo), 6), "high": round(float(hi), 6)}
