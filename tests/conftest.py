"""Shared pytest options: ``--arch NAME`` (and ``--plugin my_net.py``) for tests/bench/test_conformance.py."""


def pytest_addoption(parser):
    parser.addoption("--arch", action="append", default=[],
                     help="architecture name(s) for tests/bench/test_conformance.py (default: every registered one)")
    parser.addoption("--plugin", action="append", default=[],
                     help="unpublished plugin module or .py file to import first (as `bench run --plugin`)")


def pytest_configure(config):
    from bench.registry import load_plugin

    for spec in config.getoption("--plugin", default=[]):
        load_plugin(spec)
