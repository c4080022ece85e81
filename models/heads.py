"""Task heads, so every architecture serves both kinds of task.

Classification: global average pooling + linear. Segmentation: FCN-style 1x1 conv, bilinearly
upsampled to the input size. Both take (features, input size) so a trunk can be cut anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import TaskInfo


class ClassifierHead(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SegmentationHead(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.conv(x)
        if x.shape[-2:] != tuple(size):
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
        return x


def make_head(info: TaskInfo, channels: int) -> nn.Module:
    cls = ClassifierHead if info.kind == "classification" else SegmentationHead
    return cls(channels, info.num_classes)


class FlowModel(nn.Module):
    """A trunk (nn.Sequential: stem, blocks...) followed by a head.

    The explicit trunk lets test-time sweeps compute a shared prefix once and run only the suffix.
    """

    def __init__(self, trunk: nn.Sequential, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x), x.shape[-2:])


def init_weights(model: nn.Module) -> nn.Module:
    """He initialisation for convolutions, unit BN, as in He et al. 2016.

    A zero-width layer (width 0, rejected by the one-forward-pass check) has nothing to initialise.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.numel():
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
