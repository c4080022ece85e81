"""Shared pytest options. ``--arch NAME`` runs the conformance suite on one (plugged-in) architecture."""


def pytest_addoption(parser):
    parser.addoption("--arch", action="append", default=[],
                     help="architecture name(s) for tests/test_conformance.py (default: every registered one)")
