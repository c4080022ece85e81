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
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from bench.ablations.reorder import Reorder
from bench.ablations.skip_removal import SkipRemoval
from bench.data import TaskInfo
from bench.errors import BenchError
from bench.flow import DropBranch, FillIdentity, GateGradient, Merge, ResidualBlock, edited, identity_flow, reordered
from bench.params import validate_params
from bench.registry import ARCHITECTURES

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


def pytest_generate_tests(metafunc):
    if "arch" in metafunc.fixturenames:
        metafunc.parametrize("arch", selected(metafunc.config))
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize("kind", list(KINDS))


@contextmanager
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def test_forward_backward(arch, kind, params):
    model = build(arch, kind, params).train()
    out = model(inputs(kind))
    assert out.shape == out_shape(kind)
    out.float().square().mean().backward()
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
        out.float().square().mean().backward()
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
