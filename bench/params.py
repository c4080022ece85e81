"""Validate a plugin's YAML parameters against its own signature, with pydantic.

A factory ``def unet(task, depth: int = 4, width: int = 32)`` accepts exactly ``depth`` and
``width``; unknown keys get a did-you-mean and wrong types name the key. Classes may instead carry a
pydantic ``Params`` model. One mechanism for tasks, architectures and ablations.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

import pydantic

from bench.errors import BenchError, did_you_mean

_SKIP = {"self", "task", "info"}  # filled in by bench, not by the user


@cache
def params_model(obj: Any) -> type[pydantic.BaseModel]:
    explicit = getattr(obj, "Params", None)
    if isinstance(explicit, type) and issubclass(explicit, pydantic.BaseModel):
        return explicit
    fields: dict[str, Any] = {}
    for p in inspect.signature(obj, eval_str=True).parameters.values():
        if p.name in _SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (ann, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)
    return pydantic.create_model(f"{getattr(obj, '__name__', 'Plugin')}Params", __config__=config, **fields)


def validate_params(obj: Any, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Return the validated parameters with defaults filled in, or raise a one-line BenchError."""
    model = params_model(obj)
    try:
        return model(**params).model_dump()
    except pydantic.ValidationError as exc:
        raise BenchError(_one_line(exc, model, where)) from None


def _loc(err: dict) -> str:
    # drop pydantic's union-branch tags such as "literal['all']" or "list[str]"
    return ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _one_line(exc: pydantic.ValidationError, model: type[pydantic.BaseModel], where: str) -> str:
    errors = exc.errors()
    err = errors[0]
    key = _loc(err)
    full = f"{where}.{key}" if key else where
    alternatives = [e["msg"] for e in errors if _loc(e) == key]  # one per branch of a union (`all` or a list)
    if len(alternatives) > 1 and err["type"] not in ("extra_forbidden", "missing"):
        return f"{full}: {' or '.join(dict.fromkeys(alternatives))} (got {err.get('input')!r})"
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(str(err["loc"][-1]), model.model_fields)
        allowed = ", ".join(model.model_fields) or "none"
        return f"{full}: unknown key{hint}; allowed keys: {allowed}"
    if err["type"] == "missing":
        return f"{full}: required key is missing; add it"
    return f"{full}: {err['msg']} (got {err.get('input')!r})"
