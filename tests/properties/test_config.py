"""Properties of the config loader (hypothesis).

Junk in any form (random documents, random keys at any depth, random bytes, random --set strings)
only ever raises a one-line BenchError. Random VALID studies resolve stably: loading twice gives the
same resolved dict and hash, the resolved dict is itself a config that resolves to itself, the hash
ignores key order and changes with any value.
"""

from __future__ import annotations

import math
import random
import time
import types

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bench.config import config_hash, load_config
from bench.errors import BenchError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOP = ["name", "seeds", "device", "tasks", "architectures", "matrix", "train", "ablations", "verdict", "bootstrap"]
VALID = {
    "seeds": [0],
    "tasks": {"seg": {"name": "synthetic_shapes", "target": "pixel", "n_train": 16, "n_test": 8, "image_size": 16}},
    "architectures": {"net": {"name": "cifar_resnet", "depth": 8, "width": 4}},
    "train": {"epochs": 0.5, "batch_size": 8},
    "ablations": [{"name": "block_lesion"}],
}

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8) | st.integers(), c, max_size=3),
    max_leaves=12)


def only_bench_errors(path, overrides=()) -> dict | None:
    """Load; a failure must be a BenchError of one line. Returns the resolved dict on success."""
    try:
        return load_config(path, list(overrides)).resolved()
    except BenchError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return None


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from([*TOP, "junk"]), junk, max_size=6))
def test_junk_documents_only_raise_bench_errors(doc, tmp_path):
    path = tmp_path / "junk.yaml"
    path.write_text(yaml.safe_dump(doc))
    only_bench_errors(path)


@SETTINGS
@given(doc=st.fixed_dictionaries({}, optional={k: junk for k in TOP}), section=st.sampled_from(TOP))
def test_junk_inside_a_valid_study_only_raises_bench_errors(doc, section, tmp_path):
    path = tmp_path / "junk.yaml"
    path.write_text(yaml.safe_dump({**VALID, section: doc.get(section, VALID.get(section))}))
    only_bench_errors(path)


@SETTINGS
@given(text=st.text(max_size=200))
def test_random_text_only_raises_bench_errors(text, tmp_path):
    path = tmp_path / "text.yaml"
    path.write_text(text)
    only_bench_errors(path)


@SETTINGS
@given(blob=st.binary(max_size=200))
def test_random_bytes_only_raise_bench_errors(blob, tmp_path):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(blob)
    only_bench_errors(path)


keys = st.sampled_from(["train", "tasks", "tasks.seg", "architectures.net", "ablations.0", "seeds", "seeds.0",
                        "verdict", "matrix", "train.lr", "ablations", "x.y"])


@SETTINGS
@given(sets=st.lists(st.tuples(keys | st.text(max_size=12), st.text(max_size=12)).map("=".join)
                     | st.text(max_size=24), max_size=3))
@example(sets=["[="])  # a key that looks like a pydantic union tag once made the error message itself crash
def test_random_overrides_only_raise_bench_errors(sets, tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(VALID))
    only_bench_errors(path, sets)


ident = st.from_regex(r"x[a-z_]{0,8}", fullmatch=True)


@SETTINGS
@given(where=st.sampled_from(["", "train", "tasks.seg", "architectures.net", "ablations.0", "verdict"]),
       key=ident)
def test_an_unknown_key_anywhere_is_named_with_its_path(where, key, tmp_path):
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    if where == "verdict":
        doc["verdict"] = {"dense": "seg", "global": "seg", "ablation": "block_lesion"}
    node = doc
    for part in filter(None, where.split(".")):
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[key] = 1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(BenchError) as exc:
        load_config(path)
    dotted = f"{where}.{key}" if where else key
    assert f"{dotted}: unknown key" in str(exc.value) and "allowed" in str(exc.value)


# -- valid studies ---------------------------------------------------------------------------------
task = st.fixed_dictionaries({"name": st.just("synthetic_shapes")}, optional={
    "target": st.sampled_from(["image", "pixel"]), "num_classes": st.integers(1, 8),
    "image_size": st.integers(8, 64), "n_train": st.integers(1, 5000), "noise": st.floats(0, 1)})
arch = st.one_of(
    st.fixed_dictionaries({"name": st.just("cifar_resnet")}, optional={
        "depth": st.sampled_from([8, 14, 20, 32]), "width": st.integers(1, 32), "shortcut": st.sampled_from("AB")}),
    st.fixed_dictionaries({"name": st.just("unet")}, optional={"depth": st.integers(1, 4),
                                                               "width": st.integers(1, 32)}))
train = st.fixed_dictionaries({}, optional={
    "epochs": st.floats(0.01, 300), "batch_size": st.integers(1, 1024), "lr": st.floats(1e-6, 10),
    "optimizer": st.sampled_from(["sgd", "adamw"]), "schedule": st.sampled_from(["cosine", "multistep", "constant"]),
    "momentum": st.floats(0, 0.99), "weight_decay": st.floats(0, 0.1), "warmup_epochs": st.floats(0, 5),
    "amp": st.sampled_from(["off", "bf16", "fp16"]), "max_steps_per_epoch": st.none() | st.integers(1, 100)})
alias = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(lambda a: "__" not in a)
study = st.fixed_dictionaries({
    "seeds": st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=4, unique=True),
    "tasks": st.dictionaries(alias, task, min_size=1, max_size=2),
    "architectures": st.dictionaries(alias, arch, min_size=1, max_size=2),
    "train": train,
    "ablations": st.lists(st.sampled_from(["block_lesion", "multi_lesion", "skip_lesion", "skip_removal"]),
                          unique=True, max_size=3).map(lambda names: [{"name": n} for n in names]),
}, optional={"bootstrap": st.integers(100, 5000), "device": st.sampled_from(["auto", "cpu"])})


def shuffled(obj, rng: random.Random):
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    return [shuffled(v, rng) for v in obj] if isinstance(obj, list) else obj


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=study, order=st.randoms(use_true_random=False))
def test_valid_studies_resolve_stably(doc, order, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    a = cfg.resolved()
    b = load_config(path).resolved()
    assert a == b and config_hash(a) == config_hash(b)
    assert cfg.seeds == doc["seeds"] and set(a["tasks"]) == set(doc["tasks"])
    for alias, spec in doc["architectures"].items():  # every given value survives, defaults are filled in
        assert a["architectures"][alias].items() >= spec.items()
        assert "width" in a["architectures"][alias]
    path.write_text(yaml.safe_dump(a))  # the resolved dict is a config that resolves to itself
    assert load_config(path).resolved() == a
    path.write_text(yaml.safe_dump(shuffled(doc, order), sort_keys=False))  # key order is not meaning
    assert config_hash(load_config(path).resolved()) == config_hash(a)


@SETTINGS
@given(doc=study, lr=st.floats(1e-6, 10))
def test_the_hash_changes_with_a_value(doc, lr, tmp_path):
    assume(lr != doc["train"].get("lr", 0.1))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    before = config_hash(load_config(path).resolved())
    assert config_hash(load_config(path, [f"train.lr={lr!r}"]).resolved()) != before


# -- every number in the schema: bounded, or refused in one line (issue 14) --------------------------
def _numeric(ann) -> str | None:
    """'scalar', 'list' or 'pair' for an annotation that holds numbers (not bool), else None."""
    from typing import Annotated, Union, get_args, get_origin

    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _numeric(args[0])
    if ann in (int, float):
        return "scalar"
    if origin in (Union, types.UnionType):
        shapes = [s for s in map(_numeric, args) if s]
        return shapes[0] if shapes and not any(a in (str, bool) for a in args) else None
    if origin in (list, tuple) and args:
        inner = _numeric(args[0])
        return inner and ("pair" if origin is tuple and len(args) == 2 and args[1] is not Ellipsis else "list")
    return None


def _fields() -> list[tuple[str, str | None, str, str]]:
    """(section, plugin, key, shape) for every numeric field: study, train, and each built-in plugin."""
    from bench.config import StudyConfig, TrainConfig
    from bench.params import params_model
    from bench.registry import ABLATIONS, ARCHITECTURES, TASKS

    out = [("top", None, k, s) for k, f in StudyConfig.model_fields.items() if (s := _numeric(f.annotation))]
    out += [("train", None, k, s) for k, f in TrainConfig.model_fields.items() if (s := _numeric(f.annotation))]
    for section, reg in (("tasks", TASKS), ("architectures", ARCHITECTURES), ("ablations", ABLATIONS)):
        for name in reg.names():
            for k, f in params_model(reg.get(name)).model_fields.items():
                if s := _numeric(f.annotation):
                    out.append((section, name, k, s))
    return out


FIELDS = _fields()
numbers = st.one_of(
    st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2, 3, 8, 100, 2**31, 2**63, 10**30, 1e308, -1e308, 0.5, 1e-300, 1e6, 65_537]))


def _place(field: tuple, value) -> dict:
    section, plugin, key, shape = field
    v = [value] if shape == "list" else [value, value] if shape == "pair" else value
    doc = yaml.safe_load(yaml.safe_dump(VALID))
    if section == "top":
        doc[key] = v
    elif section == "train":
        doc["train"][key] = v
    elif section == "tasks":
        spec = {"name": plugin, key: v}
        if plugin == "classify_from_masks":
            spec["source"] = {"name": "synthetic_shapes", "n_train": 16, "n_test": 8, "image_size": 16}
        doc["tasks"] = {"t": spec}
    elif section == "architectures":
        doc["architectures"] = {"a": {"name": plugin, key: v}}
        doc["ablations"] = []
    else:
        doc["ablations"] = [{"name": plugin, key: v}]
    return doc


def test_every_numeric_schema_field_is_covered():
    sections = {f[0] for f in FIELDS}
    assert sections == {"top", "train", "tasks", "architectures", "ablations"}
    keys = {(f[0], f[2]) for f in FIELDS}
    assert {("top", "seeds"), ("top", "bootstrap"), ("train", "epochs"), ("train", "warmup_epochs"),
            ("ablations", "max_k"), ("ablations", "swaps"), ("architectures", "layers")} <= keys


@pytest.mark.parametrize("field", FIELDS, ids=[f"{s}.{p or ''}.{k}" for s, p, k, _ in FIELDS])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=numbers)
@example(value=True)
@example(value=float("nan"))
@example(value=float("-inf"))
@example(value=1e308)
@example(value=2**63)
@example(value=-1)
def test_any_number_in_any_field_is_accepted_bounded_or_refused_in_one_line(field, value, tmp_path_factory, capsys):
    from bench import limits
    from bench.cli import main

    path = tmp_path_factory.mktemp("num") / "study.yaml"
    path.write_text(yaml.safe_dump(_place(field, value)))
    capsys.readouterr()
    t0 = time.perf_counter()
    code = main(["validate", str(path)])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert elapsed < 30, f"validate took {elapsed:.1f} s"
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
        return
    assert code == 0 and not err, err
    # accepted: a real, finite number within the documented ceilings, never true/false
    assert not isinstance(value, bool)
    assert math.isfinite(value)
    assert abs(value) <= (limits.MAX_INT if isinstance(value, int) else limits.MAX_FLOAT)
