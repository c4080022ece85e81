"""Benchmarks report RATIOS measured side by side in one run (never timed assertions).

Run: ``python -m bench bench`` (or ``python -m pytest tests/benchmarks --benchmark-only``; the default
suite skips them through ``--benchmark-skip`` in pyproject's addopts). Each test hands its whole
side-by-side measurement to ``benchmark.pedantic`` once, so pytest-benchmark's time is that
measurement and the ratio is in ``extra_info``.

Clock: CPU time of the process (``time.process_time``) with ONE torch thread, so a ratio measures
work done, not time spent waiting for a core: on a shared machine, other processes' load moves
wall-clock ratios by tens of percent (we saw 1.43x for a change that cannot be faster than 1x)
and CPU-time ratios far less. The benchmarks are CPU-only; GPU speed is not measured here.
"""

import time

import pytest

from tests.helpers import one_torch_thread


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread while a benchmark runs; restored after, so the rest of the suite is unaffected."""
    with one_torch_thread():
        yield


def timed(fn):
    """(CPU seconds, result) of one call."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def interleaved(a, b, repeats: int = 3):
    """Best times (and last results) of two variants run alternately, so drifting load from other
    processes hits both; the minimum is the run least disturbed by it."""
    ta, tb, ra, rb = [], [], None, None
    for _ in range(repeats):
        t, ra = timed(a)
        ta.append(t)
        t, rb = timed(b)
        tb.append(t)
    return min(ta), min(tb), ra, rb
