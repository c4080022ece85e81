"""The differences between two configs, one ``key.path: old -> new`` line per differing leaf.

One implementation for every place that names how two configs differ (``bench compare``, a run folder that
holds another config's run). It imports nothing from bench, so any module may use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any


def config_diff(old: Any, new: Any, limit: int | None = None, *, sides: tuple[str, str] | None = ("A", "B"),
                by_name: bool = True) -> list[str]:
    """``key.path: old -> new`` for every leaf that differs, nested dicts walked in sorted key order.

    limit: at most this many entries (the first ones in that order); None keeps them all.
    sides: how a key present on one side only is named: ``key: only in A = value`` with the default labels;
        None reads a missing key as None instead (``key: None -> value``; a key absent on one side and None on
        the other is then no difference).
    by_name: two lists whose items are all dicts with a "name" (e.g. ablations) are matched by name, not by
        position; False compares them as whole values.
    """
    found = _diff(old, new, "", sides, by_name)
    return list(found if limit is None else islice(found, limit))


def _diff(a: Any, b: Any, prefix: str, sides: tuple[str, str] | None, by_name: bool) -> Iterator[str]:
    if by_name and _named_list(a) and _named_list(b):
        a, b = {x["name"]: x for x in a}, {x["name"]: x for x in b}
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if sides is not None and k not in a:
                yield f"{prefix}{k}: only in {sides[1]} = {b[k]!r}"
            elif sides is not None and k not in b:
                yield f"{prefix}{k}: only in {sides[0]} = {a[k]!r}"
            else:
                yield from _diff(a.get(k), b.get(k), f"{prefix}{k}.", sides, by_name)
    elif a != b:
        yield f"{prefix.rstrip('.')}: {a!r} -> {b!r}"


def _named_list(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(i, dict) and "name" in i for i in x)
