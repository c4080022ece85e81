"""CIFAR ResNets of He et al. 2016 (depth 6n+2, widths 16/32/64) and their plain twins.

Option A shortcuts (identity, stride-2 subsampling, zero-padded channels: no parameters) or option B
(1x1 projection + BN where the shape changes); post-activation (2016a) or pre-activation (2016b,
used by Veit et al.). ``cifar_plain`` has the same layers with every shortcut removed.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.data import TaskInfo
from bench.flow import ResidualBlock
from bench.limits import MAX_DEPTH, Width

from .heads import FlowModel, init_weights, make_head


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class PadShortcut(nn.Module):
    """Option A: subsample by the stride and zero-pad the new channels."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def basic_block(cin: int, cout: int, stride: int, stage: int, *, shortcut: str, preact: bool,
                identity: bool) -> ResidualBlock:
    same = cin == cout and stride == 1
    if preact:
        branch = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=False), conv3x3(cin, cout, stride),
                               nn.BatchNorm2d(cout), nn.ReLU(inplace=True), conv3x3(cout, cout))
        post = None
    else:
        branch = nn.Sequential(conv3x3(cin, cout, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                               conv3x3(cout, cout), nn.BatchNorm2d(cout))
        post = nn.ReLU()  # not in place: a lesion hands it the block's input
    if same:
        sc, kind = nn.Identity(), "identity"
    elif not identity:
        sc, kind = None, "none"  # a plain layer that changes shape has no shortcut to fall back on
    elif shortcut == "A":
        sc, kind = PadShortcut(cin, cout, stride), "projection"
    else:
        sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        kind = "projection"
    return ResidualBlock(branch, sc, post=post, has_identity=identity, same_shape=same, stage=stage,
                         shortcut_kind=kind)


def _build(info: TaskInfo, depth: int, width: int, shortcut: str, preact: bool, identity: bool) -> FlowModel:
    if (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    widths = [width, 2 * width, 4 * width]
    layers: list[nn.Module] = [conv3x3(info.in_channels, width)]
    if not preact:
        layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    cin = width
    for stage, w in enumerate(widths):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(basic_block(cin, w, stride, stage, shortcut=shortcut, preact=preact,
                                      identity=identity))
            cin = w
    if preact:
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
    return init_weights(FlowModel(nn.Sequential(*layers), make_head(info, cin)))


# 6n+2 with n >= 1: depth 2 would be a net with no blocks at all
CifarDepth = Annotated[int, Field(ge=8, le=MAX_DEPTH, description="6n+2 layers, n >= 1")]


def cifar_resnet(task: TaskInfo, depth: CifarDepth = 20, width: Width = 16, shortcut: Literal["A", "B"] = "A",
                 preact: bool = False) -> FlowModel:
    """CIFAR ResNet (He et al. 2016): depth 6n+2, option A/B shortcuts, post- or pre-activation."""
    return _build(task, depth, width, shortcut, preact, identity=True)


def cifar_plain(task: TaskInfo, depth: CifarDepth = 20, width: Width = 16, preact: bool = False) -> FlowModel:
    """Plain twin of cifar_resnet: the same layers with every shortcut removed (the lesion control)."""
    return _build(task, depth, width, "A", preact, identity=False)


cifar_resnet.natural = ("classification",)
cifar_plain.natural = ("classification",)
