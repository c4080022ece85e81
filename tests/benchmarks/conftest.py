"""The speed benchmarks, collected in a checkout: ``python -m pytest tests/benchmarks --benchmark-only``.

Their bodies ship in bench/benchmarks.py, so that ``python -m bench bench`` runs them from an installed
package too (the clock, the one-thread rule and the targets are described there). The default suite
skips them through ``--benchmark-skip`` in pyproject's addopts.
"""

from bench.benchmarks import one_thread  # noqa: F401  (the autouse fixture: one torch thread per benchmark)
