"""The three registries — tasks, architectures, ablations — declared in one place, one mechanism.

Built-ins and third-party plugins register the same way: a Python entry point in the group
``bench.<kind>`` whose object is a factory (function or class). Entry points are read lazily:
``get(name)`` imports only the plugin it needs; ``names()``/``describe()`` import all of them, and a
plugin that fails to import is reported by name while the rest stay usable. ``load_plugin(path)``
imports an unpublished module or file whose ``@REGISTRY.register`` decorators add its objects.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from bench.errors import BenchError, did_you_mean

# names and config aliases end up in file names (cells/<task>__<arch>__<variant>__s0.json): no paths
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    source: str  # "entry point <module:attr>" or "plugin <path>"

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().splitlines()[0] if doc else "(no description)"


def same_definition(a: Any, b: Any) -> bool:
    """The same plugin file imported again (--plugin and the config's ``plugins:``, or a second run in one
    process): same module, name and source file; it replaces the old entry instead of clashing with it."""
    try:
        return (getattr(a, "__module__", None) == getattr(b, "__module__", None)
                and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
                and inspect.getfile(a) == inspect.getfile(b))
    except TypeError:  # built-ins have no source file
        return False


class Registry:
    """Name -> factory, filled from the entry-point group ``bench.<kind>`` and ``register`` calls.

    ``base`` ("module:Class"): every object registered must subclass it (checked at registration, as
    lm-evaluation-harness does), so a wrong plugin is named when it is loaded, not deep in a run.
    """

    def __init__(self, kind: str, base: str | None = None):
        self.kind = kind
        self.base = base
        self.group = f"bench.{kind}"
        self._entries: dict[str, Entry] = {}
        self._eps: dict[str, list] | None = None
        self.failed: dict[str, str] = {}  # name -> import error, for `bench list`

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[Any], Any]:
        """Decorator for plugins loaded with ``--plugin``: ``@ARCHITECTURES.register("my_net")``."""

        def deco(obj: Any) -> Any:
            self.add(name or obj.__name__, obj, source=f"plugin {obj.__module__}")
            return obj

        return deco

    def add(self, name: str, obj: Any, source: str) -> None:
        if not isinstance(name, str) or not SAFE_NAME.match(name) or "__" in name:
            raise BenchError(f"{self.kind[:-1]} name {name!r} from {source}: use letters, digits, '_', '-', '.' "
                             "(no '__', no path); rename it")
        for ep in self._entry_points().get(name, []) if not source.startswith("entry point") else []:
            if getattr(obj, "__module__", None) != ep.module:  # would silently shadow an installed plugin
                raise BenchError(f"duplicate {self.kind[:-1]} name {name!r}: entry point {ep.value} and {source}; "
                                 "rename yours")
        self._check_type(name, obj, source)
        old = self._entries.get(name)
        if old is not None and old.obj is not obj and not same_definition(old.obj, obj):
            raise BenchError(
                f"duplicate {self.kind[:-1]} name {name!r}: registered by {old.source} and by {source}; "
                "rename one of them"
            )
        self._entries[name] = Entry(name, obj, source)

    def _check_type(self, name: str, obj: Any, source: str) -> None:
        what = f"{self.kind[:-1]} {name!r} from {source}"
        if self.base is not None:
            module, _, attr = self.base.partition(":")
            base = getattr(importlib.import_module(module), attr)
            if not (inspect.isclass(obj) and issubclass(obj, base)):
                raise BenchError(f"{what}: is {type(obj).__name__} {getattr(obj, '__name__', obj)!r}, not a subclass "
                                 f"of {base.__module__}.{base.__name__}; derive it from that class")
        elif not callable(obj):
            raise BenchError(f"{what}: is a {type(obj).__name__}, not a factory (a function or class that "
                             "builds it); register a callable")

    # -- entry points -------------------------------------------------------------------------
    def _entry_points(self) -> dict[str, list]:
        if self._eps is None:
            found: dict[str, list] = {}
            for ep in entry_points(group=self.group):
                found.setdefault(ep.name, []).append(ep)
            self._eps = found
        return self._eps

    def _load_entry_point(self, name: str) -> None:
        eps = self._entry_points().get(name, [])
        values = sorted({ep.value for ep in eps})
        if len(values) > 1:
            raise BenchError(
                f"duplicate {self.kind[:-1]} name {name!r}: entry points {', '.join(values)} in group "
                f"{self.group}; uninstall or rename one"
            )
        if not eps:
            return
        if not SAFE_NAME.match(name) or "__" in name:
            self.failed[name] = "unsafe name (letters, digits, '_', '-', '.'; no '__', no path)"
            raise BenchError(f"{self.kind[:-1]} plugin {name!r} ({values[0]}): {self.failed[name]}; rename it")
        try:
            obj = eps[0].load()
        except Exception as exc:  # a broken plugin must not take the others down
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            raise BenchError(
                f"{self.kind[:-1]} plugin {name!r} ({values[0]}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            self._check_type(name, obj, f"entry point {values[0]}")
        except BenchError as exc:  # listed by `bench list`, like an import failure
            self.failed[name] = str(exc).split(": ", 1)[-1]
            raise
        self.add(name, obj, source=f"entry point {values[0]}")

    # -- lookup ---------------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        if name not in self._entries:
            self._load_entry_point(name)
        if name not in self._entries:
            known = self.names()
            raise BenchError(
                f"unknown {self.kind[:-1]} {name!r}{did_you_mean(name, known)}; "
                f"`python -m bench list {self.kind}` shows all {len(known)}; a plugin? add --plugin my_plugin.py "
                f"(anywhere on the command line) or install its package (entry point group {self.group})"
            )
        return self._entries[name].obj

    def build(self, spec: dict[str, Any], *args: Any) -> Any:
        """The one place objects are built from config: ``{name: <registered>, **params}`` ->
        ``factory(*args, **params)`` (mmengine's ``build_from_cfg``, without its type magic)."""
        params = dict(spec)
        return self.get(params.pop("name"))(*args, **params)

    def names(self) -> list[str]:
        self.load_all()
        return sorted(self._entries)

    def load_all(self) -> None:
        for name in self._entry_points():
            if name not in self._entries and name not in self.failed:
                try:
                    self._load_entry_point(name)
                except BenchError as exc:
                    if name not in self.failed:  # duplicates are fatal, import errors are listed
                        raise exc

    def entries(self) -> list[Entry]:
        self.load_all()
        return [self._entries[n] for n in sorted(self._entries)]


TASKS = Registry("tasks")
ARCHITECTURES = Registry("architectures")
ABLATIONS = Registry("ablations", base="bench.ablations.base:Ablation")
REGISTRIES = {r.kind: r for r in (TASKS, ARCHITECTURES, ABLATIONS)}


def load_plugin(spec: str) -> None:
    """Import ``module.name`` or ``path/to/file.py`` so its ``register`` decorators run."""
    path = Path(spec)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise BenchError(f"--plugin {spec}: no such file; give a .py file or an importable module")
            mod_name = f"bench_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)  # only a complete import counts as loaded: a retry fails again
                raise
        else:
            importlib.import_module(spec)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(
            f"--plugin {spec} failed to import: {type(exc).__name__}: {exc}; fix the plugin or drop the flag"
        ) from exc
