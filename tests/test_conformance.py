"""Conformance suite: every registered architecture — built-in or plugged in — must pass it.

Plugin authors: ``python -m pytest tests/test_conformance.py --arch my_net`` (with the plugin installed,
or ``--plugin``-style: set BENCH_PLUGINS=path/to/my_net.py). Checks: forward/backward on both task kinds;
declared blocks and skips resolve to real modules; every lesion, skip fill and skip removal applies and
is undone bit-exactly; lesioning nothing equals the baseline; lesioning every residual branch leaves
the identity/projection path and still runs; reordering two exchangeable blocks is undone exactly.
"""

from __future__ import annotations

import os

import pytest
import torch

from bench.data import TaskInfo
from bench.flow import Edit, Merge, ResidualBlock, edited, identity_flow, reordered
from bench.registry import ARCHITECTURES, load_plugin

SMALL = {  # small sizes for the built-ins; a plugin is built with its defaults
    "cifar_resnet": {"depth": 14, "width": 4}, "cifar_plain": {"depth": 14, "width": 4},
    "vgg": {"layers": [2, 2], "width": 4}, "unet": {"depth": 2, "width": 4, "input_skip": True},
    "timm_resnet": {"model_name": "resnet18"}, "smp_unet": {"encoder": "resnet18", "decoder_channels": [32, 16, 8, 8, 4]},
}
KINDS = {"classification": TaskInfo("classification", 3, image_size=(32, 32)),
         "segmentation": TaskInfo("segmentation", 3, image_size=(32, 32), ignore_index=255)}

for plugin in filter(None, os.environ.get("BENCH_PLUGINS", "").split(os.pathsep)):
    load_plugin(plugin)


def pytest_generate_tests(metafunc):
    if "arch" in metafunc.fixturenames:
        names = metafunc.config.getoption("--arch") or ARCHITECTURES.names()
        metafunc.parametrize("arch", names)
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize("kind", list(KINDS))


def build(arch: str, kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ARCHITECTURES.get(arch)(KINDS[kind], **SMALL.get(arch, {})).eval()
    for m in model.modules():  # undo zero-init of last BN (timm): a zero branch would hide a broken edit
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.affine:
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    return model


def same(model, x, expected):
    with torch.no_grad():
        return torch.equal(model(x), expected)


def test_forward_backward_and_declaration(arch, kind):
    model = build(arch, kind).train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == ((2, 3) if kind == "classification" else (2, 3, 32, 32))
    out.float().mean().backward()
    assert any(p.grad is not None for p in model.parameters())
    flow = identity_flow(model)
    assert flow.points, f"{arch} declares no merge points: build it from bench.flow blocks or an adapter"
    for p in flow.points:
        assert isinstance(model.get_submodule(p.merge), Merge)
        if p.role == "block":
            assert isinstance(model.get_submodule(p.name), ResidualBlock)


def test_every_edit_is_undone_bit_exactly(arch, kind):
    model = build(arch, kind)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        base = model(x)
    flow = identity_flow(model)
    with edited(model, {}):
        assert same(model, x, base)  # lesioning zero blocks = baseline
    edits = [{b.name: Edit(drop_branch=True)} for b in flow.blocks if b.lesionable]
    means = {}
    for s in flow.skips:
        def record(module, args, name=s.name):
            means.setdefault(name, args[0].mean(0))

        hook = model.get_submodule(s.merge).register_forward_pre_hook(record)
        with torch.no_grad():
            model(x)
        hook.remove()
        edits += [{s.name: Edit(fill=f, mean=means.get(s.name))} for f in ("zero", "mean", "shuffle")]
    edits += [{p.name: Edit(fill="zero") for p in flow.points if p.has_identity}]  # skip removal
    for e in edits:
        with edited(model, e), torch.no_grad():
            changed = model(x)
        assert changed.shape == base.shape and torch.isfinite(changed).all()
        assert same(model, x, base), f"{arch}: {e} was not undone"


def test_all_residual_branches_lesioned_leaves_the_identity_path(arch, kind):
    model = build(arch, kind)
    flow = identity_flow(model)
    blocks = [b for b in flow.residual_blocks if b.lesionable]
    if not blocks:
        pytest.skip(f"{arch} has no residual blocks")
    x = torch.randn(2, 3, 32, 32)
    with edited(model, {b.name: Edit(drop_branch=True) for b in blocks}), torch.no_grad():
        out = model(x)
        for b in blocks:  # every lesioned branch is skipped entirely
            assert model.get_submodule(b.name).merge.drops_branch
    assert torch.isfinite(out).all()


def test_reordering_is_undone(arch):
    model = build(arch, "classification")
    flow = identity_flow(model)
    stages: dict[int, list[str]] = {}
    for b in flow.blocks:
        if b.same_shape and b.lesionable:
            stages.setdefault(b.stage, []).append(b.name)
    pair = next((names[:2] for names in stages.values() if len(names) >= 2), None)
    if pair is None:
        pytest.skip(f"{arch} has no two exchangeable blocks")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        base = model(x)
    with reordered(model, {pair[0]: pair[1], pair[1]: pair[0]}), torch.no_grad():
        assert not torch.equal(model(x), base)
    assert same(model, x, base)


@pytest.mark.parametrize("depth, published", [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6), (110, 1.7e6)])
def test_cifar_resnet_parameter_counts_match_he_et_al(depth, published):
    model = ARCHITECTURES.get("cifar_resnet")(TaskInfo("classification", 10), depth=depth)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - published) / published < 0.02, n


def test_adapters_reproduce_the_original_models():
    import segmentation_models_pytorch as smp
    import timm

    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    ref = timm.create_model("resnet50", num_classes=0, global_pool="").eval()
    torch.manual_seed(0)
    ours = ARCHITECTURES.get("timm_resnet")(KINDS["classification"], model_name="resnet50").eval()
    with torch.no_grad():
        assert torch.allclose(ref(x), ours.trunk(x), atol=1e-5)
    torch.manual_seed(0)
    ref = smp.Unet("resnet18", encoder_weights=None, classes=1).eval()
    torch.manual_seed(0)
    ours = ARCHITECTURES.get("smp_unet")(KINDS["segmentation"]).eval()
    with torch.no_grad():
        assert torch.allclose(ref.decoder(ref.encoder(x)), ours.decoder(ours.encoder(x)), atol=1e-5)
    flow = identity_flow(ours)
    assert len(flow.residual_blocks) == 8 and [s.stage for s in flow.skips] == [4, 3, 2, 1]
