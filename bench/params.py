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
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return pydantic.create_model(f"{getattr(obj, '__name__', 'Plugin')}Params", __config__=config, **fields)


def validate_params(obj: Any, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Return the validated parameters with defaults filled in, or raise a one-line BenchError."""
    model = params_model(obj)
    try:
        return model(**params).model_dump()
    except pydantic.ValidationError as exc:
        raise BenchError(_one_line(exc, model, where)) from None


def _one_line(exc: pydantic.ValidationError, model: type[pydantic.BaseModel], where: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    full = f"{where}.{key}" if key else where
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(str(err["loc"][-1]), model.model_fields)
        allowed = ", ".join(model.model_fields) or "none"
        return f"{full}: unknown key{hint}; allowed keys: {allowed}"
    if err["type"] == "missing":
        return f"{full}: required key is missing; add it"
    return f"{full}: {err['msg']} (got {err.get('input')!r})"
