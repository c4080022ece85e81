"""The version of bench: one place, read by pyproject.toml, provenance and `bench.__version__`."""

__version__ = "0.3.3"
