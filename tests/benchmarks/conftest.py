"""Benchmarks report RATIOS measured side by side in one run (never timed assertions).

Run: ``python -m bench bench`` (or ``python -m pytest tests/benchmarks --benchmark-only``).
"""

import time

import torch


def best_of(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` wall-clock runs (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved(fast, slow, repeats: int = 3) -> tuple[float, float]:
    """Best times of two variants measured alternately, so drifting machine load hits both."""
    f, s = [], []
    for _ in range(repeats):
        f.append(best_of(fast, 1))
        s.append(best_of(slow, 1))
    return min(f), min(s)


torch.set_num_threads(torch.get_num_threads())
