"""Speed targets of the harness, each a ratio measured side by side (see README 'Performance').

The bodies are bench/benchmarks.py's, shipped with the package for ``bench bench``; collected here too.
"""

from bench.benchmarks import (  # noqa: F401  (pytest collects the imported tests)
    test_idle_instrumentation_costs_nothing,
    test_lesion_sweep_shares_the_prefix,
    test_path_gradient_samples_are_batched,
    test_path_gradient_samples_vs_one_path_per_batch,
    test_trainer_runs_at_bare_loop_speed,
    test_training_distance_to_peak,
)
