"""The code a cell was computed with: one content hash per component (architecture, task, ablation).

A cell is a function of its config *and* of the code of the plugins it ran. The config is compared
byte for byte on resume (``config.resolved.yaml``); this module does the same for the code, so a user
who fixes their plugin model and re-runs the same command gets the fixed model retrained instead of the
old numbers kept (``bench.driver.stale``).

A component's code is the module that defines its registered object plus every module it imports,
transitively, from the same folder tree (a plugin file and the helpers beside it; ``models/``,
``tasks/`` or ``bench/ablations/`` for the built-ins): their bytes are hashed. Code installed into
``site-packages`` (a pip-installed plugin package, a non-editable bench) is named by its distribution
and version instead — its files do not change without a new version. bench's harness (training loop,
metrics) is not part of any component: it is identified by the version and commit each cell records
(``computed_with``); a change there is a new bench version (docs/reproducibility.md).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import sysconfig
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from types import ModuleType
from typing import Any

INSTALLED = tuple({Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")})


def component_hash(obj: Any) -> str:
    """``sha256:<16 hex>`` of the code behind ``obj`` (a class or factory), or ``<dist>==<version>`` when
    that code is an installed distribution's; ``unknown`` when it has no source file (a built-in)."""
    module = inspect.getmodule(obj)
    path = _file(module)
    if module is None or path is None:
        return "unknown"
    if _installed(path):
        return _distribution(module.__name__) or "unknown"
    root = path.parent
    files = sorted(module_closure(module, root))
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()[:16]}"


def module_closure(module: ModuleType, root: Path) -> set[Path]:
    """The files of ``module`` and of the modules it imports (already imported: it ran), transitively, that
    lie under ``root`` and outside site-packages."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        mod = todo.pop()
        path = _file(mod)
        if path is None or path in seen or not path.is_relative_to(root) or _installed(path):
            continue
        seen.add(path)
        todo += [m for name in _imported_names(mod.__name__, path, _is_package(mod))
                 if (m := sys.modules.get(name)) is not None]
    return seen


def _imported_names(name: str, path: Path, is_package: bool) -> list[str]:
    """Absolute names of what a module's source imports (``from a import b`` yields ``a`` and ``a.b``)."""
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    package = name if is_package else name.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                base = ".".join([*parts, base] if base else parts)
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _file(module: ModuleType | None) -> Path | None:
    path = getattr(module, "__file__", None)
    return Path(path).resolve() if path and path.endswith(".py") and Path(path).is_file() else None


def _is_package(module: ModuleType) -> bool:
    return hasattr(module, "__path__")


def _installed(path: Path) -> bool:
    return any(path.is_relative_to(p) for p in INSTALLED)


@cache
def _distribution(module_name: str) -> str | None:
    top = module_name.split(".")[0]
    for dist in packages_distributions().get(top, []):
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    return None
