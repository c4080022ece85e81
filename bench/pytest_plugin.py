"""pytest options for the shipped conformance suite (``bench.conformance``), registered via ``pytest11``.

Kept free of torch imports: pytest loads this in every session of an environment where bench is
installed, and only ``--bench-plugin`` imports anything.
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("bench", "bench conformance suite (python -m pytest --pyargs bench.conformance)")
    group.addoption("--bench-arch", action="append", default=[], metavar="NAME",
                    help="architecture(s) to check, repeatable (default: every registered one)")
    group.addoption("--bench-params", metavar="JSON",
                    help='factory parameters for the checked architecture(s), e.g. \'{"width": 8}\'')
    group.addoption("--bench-plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                    help="unpublished plugin module or .py file to import first (as `bench --plugin`)")


def pytest_configure(config) -> None:
    specs = config.getoption("--bench-plugin", default=[])
    if specs:
        import pytest

        from bench.errors import BenchError
        from bench.registry import load_plugin

        for spec in specs:
            try:
                load_plugin(spec)
            except BenchError as exc:
                raise pytest.UsageError(str(exc)) from None
