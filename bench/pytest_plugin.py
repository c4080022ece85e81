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
    group.addoption("--bench-task", action="append", default=[], metavar="NAME_OR_JSON",
                    help='task(s) to check, repeatable: a registered name or \'{"name": "voc2012", "root": "data"}\' '
                         "(given alone, the architecture checks are left out)")
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


def pytest_collection_modifyitems(config, items) -> None:
    """bench.conformance's task check runs for ``--bench-task`` only, and then alone unless ``--bench-arch`` is
    given too; every other test is left as collected."""
    tasks, archs = config.getoption("--bench-task", default=[]), config.getoption("--bench-arch", default=[])
    ours = [i for i in items if getattr(i, "module", None) is not None and i.module.__name__ == "bench.conformance"]
    if not ours:
        return
    is_task = [i.originalname == "test_task_conforms" for i in ours]
    if tasks and archs:
        drop = []
    elif tasks:  # only tasks asked for: not every registered architecture too
        drop = [i for i, t in zip(ours, is_task) if not t]
    else:
        drop = [i for i, t in zip(ours, is_task) if t]
    if drop:
        config.hook.pytest_deselected(items=drop)
        gone = {id(i) for i in drop}
        items[:] = [i for i in items if id(i) not in gone]
