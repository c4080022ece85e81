"""Classic U-Net (Ronneberger et al. 2015), sized by depth and width, with declared long skips.

Each decoder level merges its encoder skip with ``Merge('concat')``; ``input_skip=True`` also
concatenates the raw input at the last decoder stage: the full-resolution identity flow.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from bench.data import TaskInfo
from bench.flow import Merge
from bench.limits import Width

from .heads import init_weights, make_head


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, info: TaskInfo, depth: int, width: int, input_skip: bool):
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [double_conv(info.in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(depth + 1)]
        )
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in range(depth)])
        self.skips = nn.ModuleList([Merge("concat", level=i, channels=widths[i]) for i in range(depth)])
        extra = [info.in_channels if input_skip else 0] + [0] * (depth - 1)
        self.decoders = nn.ModuleList([double_conv(2 * widths[i] + extra[i], widths[i]) for i in range(depth)])
        self.input_skip = Merge("concat", level=-1, channels=info.in_channels) if input_skip else None
        self.head = make_head(info, widths[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        h = x
        for i, enc in enumerate(self.encoders):
            h = enc(h if i == 0 else self.pool(h))
            features.append(h)
        h = features[-1]
        for i in reversed(range(len(self.decoders))):
            h = self.skips[i](features[i], self.ups[i](h))
            if i == 0 and self.input_skip is not None:
                h = self.input_skip(x, h)
            h = self.decoders[i](h)
        return self.head(h, x.shape[-2:])


def unet(task: TaskInfo, depth: Annotated[int, Field(ge=1, le=12, description="poolings (2**depth must divide the image)")] = 3,
         width: Width = 16, input_skip: bool = False) -> UNet:
    """Classic U-Net (Ronneberger 2015): `depth` poolings, `width` base channels, optional input skip."""
    return init_weights(UNet(task, depth, width, input_skip))


unet.natural = ("segmentation",)
