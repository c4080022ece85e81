"""Turn a failure that is not a bug in bench into the one-line error a user can act on.

bench's own user errors (``BenchError``) are already one line. Two other kinds of failure are the
user's to fix, not bench's, and get the same treatment (exit 2, one line, ``--debug`` for the traceback):

* **A plugin's failure** — an exception, or a ``sys.exit()`` that would otherwise make bench exit 0
  having done nothing. It is attributed by the traceback: the innermost frame in a plugin's code (a
  module outside bench that registered a task, architecture or ablation, or a file loaded with
  ``--plugin`` / ``plugins:``) names the plugin.
* **An error in a DataLoader worker** — torch re-raises it with the worker's whole traceback flattened
  into the message; only the original exception's type and message are kept.

* **An in-place operation autograd refuses** ("modified by an inplace operation", raised in the backward
  pass, where no plugin frame is on the stack): one line naming the README's in-place rule.

Anything else is a bug in bench and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType

from bench.errors import BenchError, first_line, worker_error
from bench.registry import REGISTRIES


def _plugins() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """(top-level plugin module -> its file, (module, qualname) of each registered plugin object -> its name)."""
    modules: dict[str, str] = {}
    objects: dict[tuple[str, str], str] = {}
    for reg in REGISTRIES.values():
        for entry in reg._entries.values():
            name = getattr(entry.obj, "__module__", "") or ""
            if name.split(".")[0] in ("", "bench"):
                continue
            file = getattr(sys.modules.get(name), "__file__", None) or entry.source
            modules.setdefault(name.split(".")[0], f"plugin {file}")
            objects[(name, getattr(entry.obj, "__qualname__", ""))] = f"{reg.kind[:-1]} plugin {entry.name!r} ({file})"
    for name, module in list(sys.modules.items()):
        if name.startswith("bench_plugin_"):  # a --plugin file, also while it is being imported
            modules.setdefault(name, f"plugin {getattr(module, '__file__', name)}")
    return modules, objects


def culprit(tb: TracebackType | None) -> str | None:
    """The plugin whose code is innermost in the traceback (named by the registered task, architecture or
    ablation whose code it is, else by its file), or None if no plugin code is in it."""
    modules, objects = _plugins()
    named = anonymous = None
    while tb is not None:
        code, module = tb.tb_frame.f_code, str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.split(".")[0] in modules:
            anonymous = modules[module.split(".")[0]]
            qualname = getattr(code, "co_qualname", code.co_name)
            for (mod, obj), description in objects.items():
                if mod == module and (qualname == obj or qualname.startswith(obj + ".")):
                    named = description
        tb = tb.tb_next
    return named or anonymous


def innermost(tb: TracebackType | None) -> str:
    frames = traceback.extract_tb(tb)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


INPLACE_RULE = ("README, 'Register your own architecture', In-place operations: never modify in place a tensor that "
                "reaches a Merge or a block's post() (x += y, relu_(), nn.ReLU(inplace=True) on a block's input or "
                "output); write x = x + y or nn.ReLU()")


def inplace_error(exc: BaseException) -> BenchError | None:
    """Autograd's in-place error, shortened at a word boundary, with the rule that avoids it."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, RuntimeError) or "modified by an inplace operation" not in text:
        return None
    what = text.split("Hint:")[0].strip().rstrip(";.")
    if len(what) > 220:
        what = what[:220].rsplit(" ", 1)[0] + " ..."
    return BenchError(f"an in-place operation changed a tensor autograd needs ({what}); follow the {INPLACE_RULE} "
                      "(--debug shows the traceback; torch.autograd.set_detect_anomaly(True) finds the operation)")


def translate(exc: BaseException) -> BenchError | None:
    """The one-line BenchError this failure means to a user, or None for a bug in bench (keep the traceback)."""
    inner = worker_error(str(exc))
    if inner is not None:
        return BenchError(f"{inner} (raised in a DataLoader worker while reading the data; --debug shows the "
                          "traceback)")
    if isinstance(exc, BenchError):
        return exc
    inplace = inplace_error(exc)
    if inplace is not None:
        return inplace
    who = culprit(exc.__traceback__)
    if isinstance(exc, SystemExit):
        return BenchError(f"{who or innermost(exc.__traceback__)} called sys.exit({exc.code!r}) while bench ran it, "
                          "so bench stopped; a plugin must raise an exception instead (--debug shows where)")
    if who is not None:
        return BenchError(f"{who} failed: {first_line(exc)}; fix the plugin (--debug shows the traceback)")
    return None
