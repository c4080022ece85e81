"""A residual U-Net for bench, built from bench.flow: run it with `--plugin residual_unet.py`.

Two kinds of identity path, both declared by the modules themselves (no list to maintain):
- ResidualBlock: y = post(merge(shortcut(x), branch(x))) with Merge("add") inside; lesions, reordering
  and path gradients act on these.
- Merge("concat", level=i, channels=c): a U-Net long skip. `level` is the resolution level, 0 = finest
  (the input's resolution), i = after i poolings; `channels` is the skip tensor's channel count. Call it
  as merge(identity, branch): the identity is the encoder feature carried across, the branch is what the
  decoder computed (here the upsampled deeper level). Skip lesions fill or drop the identity argument.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.data import TaskInfo
from bench.flow import Merge, ResidualBlock
from bench.models.heads import make_head
from bench.registry import ARCHITECTURES


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))


def residual(cin: int, cout: int, level: int) -> ResidualBlock:
    """Two 3x3 convs; a 1x1 projection shortcut where the channel count changes."""
    same = cin == cout
    return ResidualBlock(nn.Sequential(conv_bn(cin, cout), nn.ReLU(), conv_bn(cout, cout)),
                         nn.Identity() if same else nn.Conv2d(cin, cout, 1, bias=False),
                         post=nn.ReLU(),  # out of place: a lesioned block hands its input straight to post
                         same_shape=same, stage=level, shortcut_kind="identity" if same else "projection")


class ResidualUNet(nn.Module):
    def __init__(self, task: TaskInfo, depth: int, width: int, blocks: int):
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]  # channels at level 0 (finest) .. depth
        self.stem = nn.Sequential(conv_bn(task.in_channels, width), nn.ReLU())
        self.encoders = nn.ModuleList(
            nn.Sequential(*(residual(widths[max(i - 1, 0)] if j == 0 else widths[i], widths[i], i)
                            for j in range(blocks)))
            for i in range(depth + 1))
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.skips = nn.ModuleList(Merge("concat", level=i, channels=widths[i]) for i in range(depth))
        self.decoders = nn.ModuleList(nn.Sequential(conv_bn(2 * widths[i], widths[i]), nn.ReLU())
                                      for i in range(depth))
        self.head = make_head(task, widths[0])  # classification: pool + linear; segmentation: 1x1 conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        h = self.stem(x)
        for i, encoder in enumerate(self.encoders):
            h = encoder(h if i == 0 else self.pool(h))
            features.append(h)
        h = features.pop()
        for i in reversed(range(len(self.decoders))):
            h = self.decoders[i](self.skips[i](features[i], self.ups[i](h)))  # merge(identity, branch)
        return self.head(h, x.shape[-2:])


@ARCHITECTURES.register("residual_unet")
def residual_unet(task: TaskInfo, depth: int = 3, width: int = 16, blocks: int = 2) -> ResidualUNet:
    """Residual U-Net: `depth` poolings, `width` channels at the finest level, `blocks` residual blocks per level."""
    if not 1 <= depth <= 5:
        raise ValueError(f"depth must be 1..5, got {depth}")
    return ResidualUNet(task, depth, width, blocks)


residual_unet.natural = ("segmentation",)  # classification runs as a control
