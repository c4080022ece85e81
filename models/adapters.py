"""Adapters: wrap third-party residual blocks (timm, torchvision/smp) in ``bench.flow.ResidualBlock``.

The adapted block runs the original block's own submodules in the original order, so outputs are
unchanged (a test checks it), while lesions, reordering and path gradients act on its merge point.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.flow import ResidualBlock

# Branch steps by block family, in forward order; absent or None attributes are skipped.
BRANCH_STEPS = {
    "timm.BasicBlock": ["conv1", "bn1", "drop_block", "act1", "aa", "conv2", "bn2", "se", "drop_path"],
    "timm.Bottleneck": ["conv1", "bn1", "act1", "conv2", "bn2", "drop_block", "act2", "aa", "conv3", "bn3", "se",
                        "drop_path"],
    "torchvision.BasicBlock": ["conv1", "bn1", "relu", "conv2", "bn2"],
    "torchvision.Bottleneck": ["conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"],
}
POST = {"timm.BasicBlock": "act2", "timm.Bottleneck": "act3", "torchvision.BasicBlock": "relu",
        "torchvision.Bottleneck": "relu"}


class Steps(nn.Module):
    """Applies the named children of ``block`` in order: the residual branch of a third-party block."""

    def __init__(self, block: nn.Module, names: list[str]):
        super().__init__()
        self.names = [n for n in names if getattr(block, n, None) is not None]
        for n in dict.fromkeys(self.names):
            self.add_module(n, getattr(block, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for n in self.names:
            x = getattr(self, n)(x)
        return x


def family(block: nn.Module) -> str | None:
    """'timm.BasicBlock', 'torchvision.Bottleneck', ... or None: a block the adapters do not know."""
    origin = type(block).__module__.split(".")[0]
    key = f"{origin}.{type(block).__name__}"
    return key if key in BRANCH_STEPS else None


def adapt_block(block: nn.Module, stage: int) -> ResidualBlock:
    key = family(block)
    if key is None:
        raise ValueError(f"no adapter for {type(block).__module__}.{type(block).__name__}: only timm/torchvision "
                         "BasicBlock and Bottleneck are adapted; pick a ResNet-family model")
    shortcut = getattr(block, "downsample", None)
    post = getattr(block, POST[key])
    if getattr(post, "inplace", False):  # a lesion hands post() the block's input, which must stay untouched
        post = copy.copy(post)
        post.inplace = False
    return ResidualBlock(Steps(block, BRANCH_STEPS[key]), shortcut if shortcut is not None else nn.Identity(),
                         post=post, same_shape=shortcut is None, stage=stage,
                         shortcut_kind="identity" if shortcut is None else "projection")


def adapt_layers(model: nn.Module, layer_names: list[str]) -> list[ResidualBlock]:
    """Replace every block of ``model.<layer>`` (nn.Sequential of residual blocks) in place; return them.

    Stage = index into ``layer_names`` (timm/torchvision ``layer1`` is stage 0).
    """
    adapted = []
    for stage, name in enumerate(layer_names):
        layer = getattr(model, name)
        for i, block in enumerate(list(layer)):
            layer[i] = adapt_block(block, stage)
            adapted.append(layer[i])
    return adapted
