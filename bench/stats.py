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

from dataclasses import dataclass

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


def interval(x: np.ndarray, boots: np.ndarray, alpha: float = 0.05) -> Estimate:
    """Mean of ``x`` over seeds, its (1 − alpha) interval and p (module docstring). Fewer than 2 seeds
    or no finite replicate: the estimate alone."""
    x = np.asarray(x, dtype=float)
    boots = np.atleast_2d(np.asarray(boots, dtype=float))
    finite = np.isfinite(boots).all(0)
    dropped = int((~finite).sum())
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
