"""Validate a plugin's YAML parameters against its own signature, with pydantic.

A factory ``def unet(task, depth: int = 4, width: int = 32)`` accepts exactly ``depth`` and
``width``; unknown keys get a did-you-mean and wrong types name the key. Classes may instead carry a
pydantic ``Params`` model. One mechanism for tasks, architectures and ablations, and the same rules
for every number in them: declared bounds (``Annotated[int, Field(ge=1, le=...)]`` in a signature,
``Field(le=...)`` in a ``Params`` model) are enforced; true/false is not a number (YAML would make
``lr: true`` 1.0); inf and nan are refused; and a number with no bound of its own must stay within
``bench.limits.MAX_INT`` (integers) or ``MAX_FLOAT`` (reals).
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Annotated, Any, Literal, get_args, get_origin

import pydantic

from bench import limits
from bench.errors import BenchError, did_you_mean

_SKIP = {"self", "task", "info"}  # filled in by bench, not by the user


def allows_bool(ann: Any) -> bool:
    """Whether a field typed ``ann`` may legitimately hold true/false (a nested model decides for itself)."""
    if ann in (bool, Any, object) or (isinstance(ann, type) and issubclass(ann, pydantic.BaseModel)):
        return True
    if get_origin(ann) is Literal:
        return any(isinstance(a, bool) for a in get_args(ann))
    if get_origin(ann) is Annotated:
        return allows_bool(get_args(ann)[0])
    if not get_args(ann):  # a bare `dict` or `list` holds anything; int, float and None do not hold true/false
        return ann not in (int, float, type(None))
    return any(allows_bool(a) for a in get_args(ann) if a is not Ellipsis)  # tuple[int, ...]


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_has_bool(v) for v in value.values())
    return isinstance(value, list | tuple) and any(_has_bool(v) for v in value)


def refuse_bools(value: Any, ann: Any) -> Any:
    """A before-validator body: ``seeds: [true, false]`` is an error, not [1, 0]."""
    if not allows_bool(ann) and _has_bool(value):
        raise ValueError("true/false is not a number here; write the number")
    return value


def _no_bools(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
    return refuse_bools(value, cls.model_fields[info.field_name].annotation)


NO_BOOLS = pydantic.field_validator("*", mode="before")(_no_bools)


@cache
def params_model(obj: Any) -> type[pydantic.BaseModel]:
    explicit = getattr(obj, "Params", None)
    if isinstance(explicit, type) and issubclass(explicit, pydantic.BaseModel):
        config = {**explicit.model_config, "allow_inf_nan": False}
        return type(explicit.__name__, (explicit,), {"model_config": config, "__module__": explicit.__module__,
                                                     "_no_bools": NO_BOOLS})
    fields: dict[str, Any] = {}
    for p in inspect.signature(obj, eval_str=True).parameters.values():
        if p.name in _SKIP or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = Any if p.annotation is inspect.Parameter.empty else p.annotation
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (ann, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)
    return pydantic.create_model(f"{getattr(obj, '__name__', 'Plugin')}Params", __config__=config,
                                 __validators__={"_no_bools": NO_BOOLS}, **fields)


def validate_params(obj: Any, params: dict[str, Any], where: str) -> dict[str, Any]:
    """Return the validated parameters with defaults filled in, or raise a one-line BenchError."""
    model = params_model(obj)
    try:
        values = model(**params).model_dump()
    except pydantic.ValidationError as exc:
        raise BenchError(_one_line(exc, model, where)) from None
    for key, value in values.items():
        _within_limits(value, f"{where}.{key}")
    return values


def _within_limits(value: Any, where: str) -> None:
    """The fallback bound for numbers their plugin left unbounded (a third-party ``n: int``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _within_limits(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _within_limits(v, f"{where}.{i}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > limits.MAX_INT:
        raise BenchError(f"{where}: {value} is beyond the limit of ±{limits.MAX_INT} for a plugin parameter; "
                         "give a smaller number")
    elif isinstance(value, float) and abs(value) > limits.MAX_FLOAT:
        raise BenchError(f"{where}: {value} is beyond the limit of ±{limits.MAX_FLOAT:g} for a plugin parameter; "
                         "give a smaller number")


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
    return f"{full}: {err['msg'].removeprefix('Value error, ')} (got {err.get('input')!r})"
