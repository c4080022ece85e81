"""bench: the reference benchmark for identity-flow ablations in deep networks.

``bench.run(config, **overrides)`` runs a study and returns its results; ``bench.load(run_dir)`` reads
one back (``bench.api``); ``bench.tidy(run_dir)`` gives them as one pandas DataFrame (``bench.tidy_table``). They
load on first use, so ``import bench`` stays light.

PYTEST_DONT_REWRITE: pytest's marker for a module it need not rewrite (this one asserts nothing). ``bench check``
runs pytest in the process that has imported bench, whose pytest11 plugin makes pytest mark the package for
rewriting; without the marker pytest warns that it is already imported (once per installed copy of its metadata).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.version import __version__

__all__ = ["load", "run", "tidy", "__version__"]

if TYPE_CHECKING:
    from bench.api import load, run
    from bench.tidy_table import tidy


def __getattr__(name: str) -> Any:
    if name in ("run", "load"):
        from bench import api

        return getattr(api, name)
    if name == "tidy":
        from bench.tidy_table import tidy

        return tidy
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
