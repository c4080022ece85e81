"""The merge-point mechanism: edits are exact, reversible, and gate only what they say."""

from __future__ import annotations

import torch
from torch import nn

from bench.data import TaskInfo
from bench.flow import DropBranch, FillIdentity, GateGradient, Merge, ResidualBlock, edited, identity_flow, reordered
from bench.models.resnet_cifar import cifar_resnet
from bench.models.unet import unet

CLS = TaskInfo("classification", 10, image_size=(16, 16))


def small_resnet():
    torch.manual_seed(0)
    return cifar_resnet(CLS, depth=14, width=4).eval()


def test_declaration_lists_blocks_in_forward_order():
    flow = identity_flow(small_resnet())
    assert [b.stage for b in flow.blocks] == [0, 0, 1, 1, 2, 2]
    assert [b.same_shape for b in flow.blocks] == [True, True, False, True, False, True]
    assert [b.shortcut for b in flow.blocks] == ["identity", "identity", "projection", "identity", "projection",
                                                 "identity"]
    skips = identity_flow(unet(TaskInfo("segmentation", 3), depth=2, width=4, input_skip=True)).skips
    assert [(s.stage, s.kind, s.channels) for s in skips] == [(0, "concat", 4), (1, "concat", 8), (-1, "concat", 3)]


def test_lesion_is_shortcut_only_and_reversible():
    model = small_resnet()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    name = identity_flow(model).blocks[1].name
    block = model.get_submodule(name)
    h = torch.randn(2, 4, 16, 16)
    with edited(model, {name: DropBranch()}):
        assert torch.equal(block(h), torch.relu(h))  # post-activation: y = relu(shortcut(x))
        assert not torch.equal(model(x), before)
    assert torch.equal(model(x), before)


def test_zero_fill_turns_a_residual_block_into_its_plain_twin():
    block = ResidualBlock(nn.Conv2d(2, 2, 1), nn.Identity())
    x = torch.randn(1, 2, 3, 3)
    block.merge.edit = FillIdentity("zero")
    assert torch.equal(block(x), block.branch(x))


def test_gradient_routing_changes_backward_not_forward():
    merge = Merge("add")
    identity = torch.randn(3, 2, requires_grad=True)
    branch = torch.randn(3, 2, requires_grad=True)
    mask = torch.tensor([1.0, 0.0, 1.0])
    merge.edit = GateGradient(mask, 1 - mask)
    out = merge(identity, branch)
    assert torch.equal(out, identity + branch)
    out.sum().backward()
    assert torch.equal(identity.grad[:, 0], mask) and torch.equal(branch.grad[:, 0], 1 - mask)


def test_reorder_swaps_and_restores():
    model = small_resnet()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    a, b = (p.name for p in identity_flow(model).blocks[:2])
    with reordered(model, {a: b, b: a}):
        assert model.get_submodule(a) is not model.get_submodule(b)
        assert not torch.equal(model(x), before)
    assert torch.equal(model(x), before)


def test_shuffle_and_mean_fill_on_concat_skip():
    merge = Merge("concat")
    identity, branch = torch.arange(6.0).view(3, 2), torch.zeros(3, 1)
    merge.edit = FillIdentity("shuffle")
    out = merge(identity, branch)
    assert torch.equal(out[:, 1:], identity[[2, 0, 1]])
    merge.edit = FillIdentity("mean", identity.mean(0))
    assert torch.equal(merge(identity, branch)[:, 1:], identity.mean(0).expand(3, 2))
