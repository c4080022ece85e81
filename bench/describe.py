"""What a registered task, architecture or ablation takes: ``bench describe NAME`` and ``bench list``.

Everything is read from the same pydantic model that validates the YAML (``bench.params``), so the
help can never disagree with what a config accepts.
"""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from bench.data import TaskInfo
from bench.errors import BenchError, did_you_mean
from bench.params import params_model
from bench.registry import REGISTRIES, Entry

KINDS = ("classification", "segmentation")


def type_name(ann: Any) -> str:
    """``int``, ``int | None``, ``tuple[float, float]``, ``'A' | 'B'``: the annotation as a reader writes it,
    without pydantic's ``Annotated[..., FieldInfo(...)]`` (its bounds are the ``bounds`` column)."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if ann is type(None):
        return "None"
    if ann is Ellipsis:
        return "..."
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "").replace("NoneType", "None")


def _constraints(metadata) -> list[str]:
    parts = []
    for m in metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len >="),
                          ("max_length", "len <=")):
            value = getattr(m, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
        parts += _constraints(getattr(m, "metadata", ()))  # a FieldInfo inside Annotated carries its own
    return parts


def _inner(ann: Any) -> list[str]:
    """Bounds of the element types: ``int | None`` of a bounded int, each of a tuple's elements (first found)."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _constraints(args[1:]) or _inner(args[0])
    for a in args:
        found = _inner(a)
        if found:
            return found
    return []


def bounds(field) -> str:
    parts = _constraints(field.metadata) or _inner(field.annotation)
    return ", ".join(dict.fromkeys(parts))


def parameters(obj: Any) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, bounds, meaning) of each YAML parameter; a required one has default ``required``."""
    rows = []
    for name, field in params_model(obj).model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((name, type_name(field.annotation), default, bounds(field), field.description or ""))
    return rows


def signature_line(obj: Any) -> str:
    """``root, num_classes, crop_size=256, ...``: one line for ``bench list``."""
    return ", ".join(name if default == "required" else f"{name}={default}"
                     for name, _, default, *_ in parameters(obj)) or "(no parameters)"


def natural_role(obj: Any) -> str:
    natural = tuple(getattr(obj, "natural", ()) or KINDS)
    if set(KINDS) <= set(natural):
        return "natural for both task kinds"
    return f"natural for {'/'.join(natural)}; {'/'.join(k for k in KINDS if k not in natural)} runs as a control"


def n_params(obj: Any, kind: str = "classification", **params) -> int:
    info = TaskInfo(kind, 10, image_size=(32, 32), ignore_index=255 if kind == "segmentation" else None)
    return sum(p.numel() for p in obj(info, **params).parameters())


def find(name: str) -> list[tuple[str, Entry]]:
    """Every registry entry called ``name`` (a name may be both a task and an architecture)."""
    found = []
    for kind, reg in REGISTRIES.items():
        if name in reg.names():
            found.append((kind, next(e for e in reg.entries() if e.name == name)))
    if not found:
        known = [n for reg in REGISTRIES.values() for n in reg.names()]
        raise BenchError(f"unknown name {name!r}{did_you_mean(name, known)}; `python -m bench list` shows all; "
                         "a plugin? add --plugin my_plugin.py, or install its package (entry point group "
                         "bench.tasks / bench.architectures / bench.ablations)")
    return found


def describe(kind: str, entry: Entry) -> str:
    """The full text of ``bench describe``: header, docstring, parameter table, kind-specific facts."""
    obj = entry.obj
    lines = [f"{entry.name} ({kind[:-1]}; {entry.source})", ""]
    doc = inspect.getdoc(obj) or "(no docstring)"
    lines += [f"  {line}" if line else "" for line in doc.splitlines()]
    lines.append("")
    rows = parameters(obj)
    if rows:
        header = ("parameter", "type", "default", "bounds", "meaning")
        if not any(r[4] for r in rows):  # a plain function's parameters carry no descriptions
            header, rows = header[:4], [r[:4] for r in rows]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    else:
        lines.append("  parameters: none")
    if kind == "architectures":
        lines.append(f"  task kinds: {natural_role(obj)}")
        for k in KINDS:
            try:
                lines.append(f"  parameters with defaults, {k} (10 classes, 32x32): {n_params(obj, k):,}")
            except Exception as exc:  # an optional dependency missing, weights unreachable, ...
                lines.append(f"  parameters with defaults, {k}: n/a ({type(exc).__name__}: {exc})")
    elif kind == "ablations":
        lines.append(f"  phase: {getattr(obj, 'phase', '?')} time")
    lines.append(f"  config: {{name: {entry.name}{''.join(f', {r[0]}: ...' for r in rows if r[2] == 'required')}}}")
    return "\n".join(lines)
