"""Shared pytest options: ``--arch NAME`` (and ``--plugin my_net.py``) for tests/bench/test_conformance.py."""


def pytest_addoption(parser):
    parser.addoption("--arch", action="append", default=[],
                     help="architecture name(s) for tests/bench/test_conformance.py (default: every registered one)")
    parser.addoption("--plugin", action="append", default=[],
                     help="unpublished plugin module or .py file to import first (as `bench run --plugin`)")


def pytest_configure(config):
    import os

    from bench.registry import load_plugin

    # PNG only: the PDF and SVG beside each figure cost about 1 s per figure, over hundreds of tiny reports;
    # tests/end_to_end/test_figures.py writes all three (bench.plots.FORMATS_ENV)
    os.environ.setdefault("BENCH_FIGURE_FORMATS", "png")

    for spec in config.getoption("--plugin", default=[]):
        load_plugin(spec)
