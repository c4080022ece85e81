"""A plugin whose own error message spans lines: the CLI still prints one line."""

from bench.errors import BenchError

raise BenchError("first line\n  second line")
