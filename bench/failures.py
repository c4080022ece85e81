"""Turn a failure that is not a bug in bench into the one-line error a user can act on.

bench's own user errors (``BenchError``) are already one line. Two other kinds of failure are the
user's to fix, not bench's, and get the same treatment (exit 2, one line, ``--debug`` for the traceback):

* **A plugin's failure** — an exception, or a ``sys.exit()`` that would otherwise make bench exit 0
  having done nothing. It is attributed by the traceback: the innermost frame in a plugin's code (a
  module outside bench that registered a task, architecture or ablation, or a file loaded with
  ``--plugin`` / ``plugins:``) names the plugin.
* **An error in a DataLoader worker** — torch re-raises it with the worker's whole traceback flattened
  into the message; only the original exception's type and message are kept.

Anything else is a bug in bench and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType

from bench.errors import BenchError, worker_error
from bench.registry import REGISTRIES


def plugin_modules() -> dict[str, str]:
    """Top-level module name of each plugin -> how to name it in a message."""
    out: dict[str, str] = {}
    for reg in REGISTRIES.values():
        for entry in reg._entries.values():
            module = sys.modules.get(getattr(entry.obj, "__module__", "") or "")
            top = (getattr(entry.obj, "__module__", "") or "").split(".")[0]
            if top and top != "bench":
                where = getattr(module, "__file__", None) or entry.source
                out.setdefault(top, f"{reg.kind[:-1]} plugin {entry.name!r} ({where})")
    for name, module in list(sys.modules.items()):
        if name.startswith("bench_plugin_"):  # a --plugin file, also while it is being imported
            out.setdefault(name, f"plugin {getattr(module, '__file__', name)}")
    return out


def culprit(tb: TracebackType | None) -> str | None:
    """The plugin whose code is innermost in the traceback, or None if no plugin code is in it."""
    plugins, found = plugin_modules(), None
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0]
        found = plugins.get(module, found)
        tb = tb.tb_next
    return found


def innermost(tb: TracebackType | None) -> str:
    frames = traceback.extract_tb(tb)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def translate(exc: BaseException) -> BenchError | None:
    """The one-line BenchError this failure means to a user, or None for a bug in bench (keep the traceback)."""
    inner = worker_error(str(exc))
    if inner is not None:
        return BenchError(f"{inner} (raised in a DataLoader worker while reading the data; --debug shows the "
                          "traceback)")
    if isinstance(exc, BenchError):
        return exc
    who = culprit(exc.__traceback__)
    if isinstance(exc, SystemExit):
        return BenchError(f"{who or innermost(exc.__traceback__)} called sys.exit({exc.code!r}) while bench ran it, "
                          "so bench stopped; a plugin must raise an exception instead (--debug shows where)")
    if who is not None:
        return BenchError(f"{who} failed: {first_line(exc)}; fix the plugin (--debug shows the traceback)")
    return None
