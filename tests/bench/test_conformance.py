"""The shipped conformance suite (bench/conformance.py) on every registered architecture.

This file only re-exports it so the default suite checks the built-ins; ``--arch NAME`` (tests/conftest.py)
or ``--bench-arch NAME --bench-params JSON`` narrows it. Plugin authors run the same checks without this
repository: ``python -m pytest --pyargs bench.conformance --bench-arch my_net``.
"""

from bench.conformance import (  # noqa: F401  (pytest collects what this module holds)
    one_thread,
    params,
    pytest_generate_tests,
    test_declaration_resolves_and_every_merge_runs,
    test_every_edit_applies_and_is_undone_bit_exactly,
    test_forward_backward,
    test_lesioning_every_residual_branch_leaves_the_identity_path,
    test_reordering_changes_the_output_and_is_undone,
)
