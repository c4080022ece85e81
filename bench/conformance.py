"""Conformance suite: every registered architecture — built-in or plugged in — must pass it.

It ships with bench, so a plugin author runs it from their own package, with no checkout of bench:

    python -m pytest --pyargs bench.conformance --bench-arch my_net --bench-params '{"width": 8}'
    python -m pytest --pyargs bench.conformance --bench-plugin my_net.py --bench-arch my_net
    python -m bench check my_net --set width=8            # the same, through the CLI

``--bench-arch`` is repeatable (default: every registered architecture); ``--bench-params`` is a JSON
object of factory parameters, validated like a config's, for every selected architecture (default: its
defaults; the built-ins use the small sizes in ``SMALL``). The options come from ``bench.pytest_plugin``,
registered as a pytest plugin (entry point ``pytest11``) when bench is installed. Inputs: 3 channels,
32x32, 3 classes.

Checks, on both task kinds: forward/backward; declared blocks and skips resolve to real modules and
every declared merge runs in the forward pass; every lesion, skip fill (zero / calibrated mean / shuffle),
skip removal and path-gradient gate applies and is undone bit-exactly; lesioning nothing equals the
baseline; lesioning every residual branch leaves the identity/projection path, which still runs and
trains no branch; reordering two exchangeable blocks changes the output and is undone bit-exactly.

Tasks (``bench check TASK``, or ``--bench-task NAME_OR_JSON`` here): both splits non-empty; every label
within ``0..num_classes-1`` or the ignore index; images with ``in_channels`` channels and masks the size
of their images (evaluation and augmented training batches); ``class_names``, ``background_index`` and
``ignore_index`` consistent with ``num_classes``; a ``classify_from_masks`` twin's test labels equal to
its rule recomputed here, independently, from the source's masks. Each failure is one line naming the
task and the fix (``task_problems``).
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager

import pytest
import torch

from bench.ablations.reorder import Reorder
from bench.ablations.skip_removal import SkipRemoval
from bench.data import Task, TaskInfo, torch_threads
from bench.errors import BenchError, first_line
from bench.failures import inplace_error
from bench.flow import DropBranch, FillIdentity, GateGradient, Merge, ResidualBlock, edited, identity_flow, reordered
from bench.params import validate_params
from bench.registry import ARCHITECTURES, TASKS

SMALL = {  # small sizes for the built-ins; any other architecture is built with its defaults
    "cifar_resnet": {"depth": 14, "width": 4},
    "cifar_plain": {"depth": 14, "width": 4},
    "vgg": {"layers": [3, 2], "width": 4},
    "unet": {"depth": 2, "width": 4, "input_skip": True},
    "timm_resnet": {"model_name": "resnet18", "model_kwargs": {"channels": [64, 16, 32, 64]}},
    "smp_unet": {"encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
}
KINDS = {"classification": TaskInfo("classification", 3, image_size=(32, 32)),
         "segmentation": TaskInfo("segmentation", 3, image_size=(32, 32), ignore_index=255)}


def selected(config: pytest.Config) -> list[str]:
    """``--bench-arch`` (and this repository's own ``--arch``) or every registered architecture."""
    names = [*(config.getoption("--bench-arch", default=None) or []), *(config.getoption("--arch", default=None) or [])]
    return list(dict.fromkeys(names)) or ARCHITECTURES.names()


def user_params(config: pytest.Config) -> dict | None:
    text = config.getoption("--bench-params", default=None)
    if text is None:
        return None
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise pytest.UsageError(f"--bench-params {text!r}: not JSON ({exc}); e.g. '{{\"width\": 8}}'") from None
    if not isinstance(params, dict):
        raise pytest.UsageError(f"--bench-params {text!r}: give a JSON object, e.g. '{{\"width\": 8}}'")
    return params


def task_specs(config: pytest.Config) -> list[dict]:
    """``--bench-task`` values: a registered task name, or a JSON object ``{"name": ..., <param>: ...}``."""
    specs = []
    for text in config.getoption("--bench-task", default=None) or []:
        text = text.strip()
        if not text.startswith("{"):
            specs.append({"name": text})
            continue
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise pytest.UsageError(f"--bench-task {text!r}: not JSON ({exc}); give a task name or "
                                    '\'{"name": "voc2012", "root": "data"}\'') from None
        if not isinstance(spec, dict) or "name" not in spec:
            raise pytest.UsageError(f"--bench-task {text!r}: give a task name or a JSON object with its name")
        specs.append(spec)
    return specs


def pytest_generate_tests(metafunc):
    if "task_spec" in metafunc.fixturenames:
        specs = task_specs(metafunc.config)
        metafunc.parametrize("task_spec", specs, ids=[s["name"] for s in specs])
    if "arch" in metafunc.fixturenames:
        metafunc.parametrize("arch", selected(metafunc.config))
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize("kind", list(KINDS))


def one_torch_thread() -> AbstractContextManager[None]:
    """One torch thread for the block (bench.data.torch_threads)."""
    return torch_threads(1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core box: intra-op threads only contend (seconds instead of ms)."""
    with one_torch_thread():
        yield


@pytest.fixture
def params(request) -> dict:
    """The factory parameters under test: --bench-params, else the small built-in sizes, else defaults."""
    arch = request.getfixturevalue("arch")
    given = user_params(request.config)
    raw = given if given is not None else SMALL.get(arch, {})
    try:
        return validate_params(ARCHITECTURES.get(arch), raw, f"--bench-params for {arch}")
    except BenchError as exc:
        raise pytest.UsageError(str(exc)) from None


def build(arch: str, kind: str, params: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ARCHITECTURES.get(arch)(KINDS[kind], **params).eval()
    for m in model.modules():  # undo zero-init of last BNs (timm): a zero branch would hide a broken edit
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine:
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    with torch.no_grad():  # and layer scales (timm's `gamma`, ConvNeXt/ViT: 1e-6 at init), for the same reason:
        for name, p in model.named_parameters():  # at 1e-6 a swap of two blocks moves the output below float32's
            if name.rpartition(".")[2] == "gamma" and p.abs().max() < 1e-3:  # resolution and reorder looks broken
                torch.nn.init.uniform_(p, 0.5, 1.5)
    return model


def inputs(kind: str) -> torch.Tensor:
    info = KINDS[kind]
    return torch.randn(2, info.in_channels, *info.image_size, generator=torch.Generator().manual_seed(1))


def out_shape(kind: str) -> tuple[int, ...]:
    info = KINDS[kind]
    return (2, info.num_classes) if kind == "classification" else (2, info.num_classes, *info.image_size)


def run(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def backward(out: torch.Tensor) -> None:
    """``out``'s loss backpropagated; autograd's in-place error as one line naming the README's in-place rule
    (as ``bench run`` says it: ``bench.failures.inplace_error``), not a raw RuntimeError."""
    err = None
    try:
        out.float().square().mean().backward()
    except RuntimeError as exc:
        err = inplace_error(exc)
        if err is None:
            raise
    if err is not None:  # outside the except: the report is the one line, not autograd's chained error
        pytest.fail(str(err), pytrace=False)


def test_forward_backward(arch, kind, params):
    model = build(arch, kind, params).train()
    out = model(inputs(kind))
    assert out.shape == out_shape(kind)
    backward(out)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is None or torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_declaration_resolves_and_every_merge_runs(arch, kind, params):
    model = build(arch, kind, params)
    flow = identity_flow(model)
    assert flow.points, f"{arch} declares no merge points: build it from bench.flow blocks or an adapter"
    assert len({p.name for p in flow.points}) == len(flow.points)
    for p in flow.points:
        assert isinstance(model.get_submodule(p.merge), Merge)
        if p.role == "block":
            assert isinstance(model.get_submodule(p.name), ResidualBlock)
        else:
            assert p.kind == "concat" or p.has_identity
    called: set[str] = set()
    hooks = [model.get_submodule(p.merge).register_forward_hook(lambda *_, n=p.name: called.add(n))
             for p in flow.points]
    run(model, inputs(kind))
    for h in hooks:
        h.remove()
    assert called == {p.name for p in flow.points}, f"declared but never run: {sorted({p.name for p in flow.points} - called)}"


def calibrated_means(model: torch.nn.Module, points, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """As skip_lesion calibrates fill='mean': the identity tensor's batch mean, read at the merge."""
    means: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(module, args, name):
        means[name], shapes[name] = args[0].mean(0), tuple(args[0].shape[1:])

    hooks = [model.get_submodule(p.merge).register_forward_pre_hook(lambda m, a, n=p.name: hook(m, a, n))
             for p in points]
    run(model, x)
    for h in hooks:
        h.remove()
    assert set(means) == {p.name for p in points}, "a declared skip never ran: fill='mean' cannot be calibrated"
    assert all(tuple(means[p.name].shape) == shapes[p.name] for p in points)
    return means


def test_every_edit_applies_and_is_undone_bit_exactly(arch, kind, params):
    model = build(arch, kind, params)
    x = inputs(kind)
    base = run(model, x)
    with edited(model, {}):
        assert torch.equal(run(model, x), base), "lesioning zero blocks must equal the baseline"
    flow = identity_flow(model)
    skips = [p for p in flow.skips if p.has_identity]
    means = calibrated_means(model, skips, x)
    edits = [{b.name: DropBranch()} for b in flow.blocks if b.lesionable]
    edits += [{s.name: FillIdentity(f, means[s.name])} for s in skips for f in ("zero", "mean", "shuffle")]
    removal = SkipRemoval()
    if removal.applicable(flow) is None:
        edits += list(removal.variants(flow).values())
    for e in edits:
        with edited(model, e):
            changed = run(model, x)
        assert changed.shape == base.shape and torch.isfinite(changed).all(), f"{arch}: {e}"
        assert not torch.equal(changed, base), f"{arch}: {e} had no effect"
        assert torch.equal(run(model, x), base), f"{arch}: {e} was not undone"
    gate = torch.tensor([1.0, 0.0])  # path gradients gate the backward pass only: forward is unchanged
    with edited(model, {p.name: GateGradient(gate, 1 - gate) for p in flow.points}):
        assert torch.equal(run(model, x), base)


def test_lesioning_every_residual_branch_leaves_the_identity_path(arch, kind, params):
    model = build(arch, kind, params)
    blocks = [b for b in identity_flow(model).residual_blocks if b.lesionable]
    if not blocks:
        pytest.skip(f"{arch} has no lesionable residual blocks")
    branches = {id(p) for b in blocks for p in model.get_submodule(b.name).branch.parameters()}
    with edited(model, {b.name: DropBranch() for b in blocks}):
        out = model(inputs(kind))
        assert out.shape == out_shape(kind) and torch.isfinite(out).all()
        backward(out)
    for p in model.parameters():
        if id(p) in branches:
            assert p.grad is None, "a lesioned branch still ran"


def test_reordering_changes_the_output_and_is_undone(arch, params):
    model = build(arch, "classification", params)
    flow = identity_flow(model)
    groups = Reorder.groups(flow)
    if not groups:
        pytest.skip(f"{arch} has no two exchangeable blocks")
    a, b = (flow.blocks[i].name for i in groups[0][:2])
    x = inputs("classification")
    base = run(model, x)
    with reordered(model, {a: b, b: a}):
        assert not torch.equal(run(model, x), base)
    assert torch.equal(run(model, x), base)


# ---------------------------------------------------------------------------------------------------- tasks


def build_task(spec: dict, where: str, label: str | None = None) -> tuple[Task, dict]:
    """The task a spec names, built as a run builds it, and its validated parameters (defaults filled in). With
    ``label``, an error raised while building it (the loader finding a bad mask, a missing root) is prefixed
    ``task <label>: `` and keeps the loader's message."""
    params = dict(spec)
    name = params.pop("name")
    params = validate_params(TASKS.get(name), params, where)
    try:
        return TASKS.build({"name": name, **params}), params
    except BenchError as exc:
        if label is None:
            raise
        raise BenchError(f"task {label}: {exc}") from exc
    except Exception as exc:  # the factory's own error: one line, with the task named
        if label is None:
            raise
        raise BenchError(f"task {label}: cannot build the task ({first_line(exc)}); fix the data or the parameters "
                         "(--debug shows the traceback)") from exc


def task_problems(label: str, task: Task, spec: dict | None = None) -> list[str]:
    """What is wrong with a built task, one line each naming ``label`` and the fix; [] when it conforms.
    ``spec`` (name and validated parameters): a ``classify_from_masks`` twin is checked against its source."""
    info, out = task.info, []

    def bad(message: str) -> None:
        out.append(f"task {label}: {message}")

    if info.kind not in ("classification", "segmentation"):
        bad(f"TaskInfo.kind is {info.kind!r}; use 'classification' or 'segmentation'")
        return out
    n, ignore = info.num_classes, info.ignore_index
    if n < 2:
        bad(f"num_classes is {n}; a task needs at least 2 classes")
    if info.class_names and len(info.class_names) != n:
        bad(f"class_names has {len(info.class_names)} names for num_classes {n}; give one name per class")
    if info.background_index is not None and not 0 <= info.background_index < n:
        bad(f"background_index {info.background_index} is not a class (0..{n - 1}); give a class index or None")
    if ignore is not None and 0 <= ignore < n:
        bad(f"ignore_index {ignore} is class {ignore} (0..{n - 1}); use an index outside the classes, e.g. 255")
    dims = 1 if info.kind == "classification" else 3
    for name, split in (("train", task.train), ("test", task.test)):
        if len(split) == 0:
            bad(f"the {name} split is empty; check the data root and the split's file list or subset")
            continue
        try:  # a loader reads its labels here and may refuse one (a mask value out of range): its own message
            targets = torch.as_tensor(split.targets())
        except BenchError as exc:
            bad(str(exc))
            continue
        if targets.ndim != dims or len(targets) != len(split):
            what = "labels (N,)" if dims == 1 else "masks (N, H, W)"
            bad(f"{name} targets() has shape {tuple(targets.shape)} for {len(split)} examples; return {what}")
            continue
        values = targets.unique()
        wrong = values[((values < 0) | (values >= n)) & (values != (ignore if ignore is not None else -(2 ** 62)))]
        if wrong.numel():
            shown = ", ".join(str(v) for v in wrong[:5].tolist()) + (", ..." if wrong.numel() > 5 else "")
            allowed = f"0..{n - 1}" + (f" or the ignore index {ignore}" if ignore is not None else "")
            bad(f"{name} label(s) {shown} out of range (num_classes {n}: {allowed}); fix the labels, or num_classes"
                + ("" if dims == 1 else " / ignore_index"))
        for train in (False, True):
            where = f"{name} {'training' if train else 'evaluation'} batch"
            try:
                x, y = next(iter(split.batches(min(2, len(split)), train=train)))
            except Exception as exc:  # the task's own code failed: say so, with where
                bad(f"{where} could not be read ({type(exc).__name__}: {exc}); fix the split's batches()")
                break
            if x.ndim != 4 or x.shape[1] != info.in_channels:
                bad(f"{where}: images have shape {tuple(x.shape)}; give (B, {info.in_channels}, H, W) as in_channels "
                    "says, or fix in_channels")
            elif dims == 3 and tuple(y.shape) != (x.shape[0], *x.shape[-2:]):
                bad(f"{where}: masks {tuple(y.shape)} do not match images {tuple(x.shape)}; a mask must have its "
                    "image's height and width (crop/resize/pad them together)")
            elif dims == 1 and tuple(y.shape) != (x.shape[0],):
                bad(f"{where}: labels {tuple(y.shape)} for {x.shape[0]} images; give one label per image")
    if spec is not None and spec.get("name") == "classify_from_masks" and not out:
        out += twin_problems(label, task, spec)
    return out


def recomputed_labels(masks: torch.Tensor, source: TaskInfo, spec: dict) -> list[int | None]:
    """classify_from_masks' rule as its docstring states it, per mask, written apart from its implementation:
    None where the image is dropped."""
    labels: list[int | None] = []
    skip = source.background_index if spec.get("skip_background", True) else None
    for mask in masks:
        values = mask.flatten().long()
        if source.ignore_index is not None:
            values = values[values != source.ignore_index]
        counts = torch.bincount(values, minlength=source.num_classes)
        if spec.get("rule", "dominant") == "present_any":
            labels.append(int(counts[list(spec["classes"])].sum() >= spec.get("min_pixels", 1)))
            continue
        if skip is not None:
            counts[skip] = 0
        if counts.max() > 0:
            labels.append(int(counts.argmax()))  # torch's argmax: the first maximum, i.e. the lowest index
        elif spec.get("unlabelled", "background") == "background" and source.background_index is not None:
            labels.append(source.background_index)
        else:
            labels.append(None)
    return labels


def twin_problems(label: str, task: Task, spec: dict) -> list[str]:
    """The twin's test labels against its rule applied to its source's test masks (same images, same order)."""
    source, _ = build_task(dict(spec["source"]), f"task {label}: source")
    expected = [y for y in recomputed_labels(source.test.targets(), source.info, spec) if y is not None]
    got = torch.as_tensor(task.test.targets()).tolist()
    if len(got) != len(expected):
        return [f"task {label}: {len(got)} test labels, but its rule keeps {len(expected)} of the source's "
                f"{len(source.test)} images; the twin must drop exactly the images with no countable pixel"]
    wrong = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
    if wrong:
        i = wrong[0]
        return [f"task {label}: {len(wrong)} test label(s) differ from the {spec.get('rule', 'dominant')} rule applied "
                f"to the source's masks (first: image {i}, label {got[i]}, rule {expected[i]}); derive each label from "
                "its own mask as documented (python -m bench describe classify_from_masks)"]
    return []


def test_task_conforms(task_spec):
    """One ``--bench-task``: every problem ``task_problems`` finds, one line each."""
    with one_torch_thread():
        try:
            task, params = build_task(task_spec, f"--bench-task {task_spec['name']}", task_spec["name"])
        except BenchError as exc:
            pytest.fail(str(exc), pytrace=False)
        problems = task_problems(task_spec["name"], task, {"name": task_spec["name"], **params})
    assert not problems, "\n".join(problems)
