"""VGG-style nets with BN for 32x32-class images: the classic control without identity paths."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from bench.data import TaskInfo
from bench.flow import ResidualBlock
from bench.limits import Depth, Width

from .heads import FlowModel, init_weights, make_head

# at least one stage of at least one layer; width doubles per stage, so stages are few
Stages = Annotated[tuple[Depth, ...], Field(min_length=1, max_length=8, description="layers per stage")]


def vgg(task: TaskInfo, layers: Stages = (2, 2, 2), width: Width = 16) -> FlowModel:
    """VGG-style plain net with BN: stages of 3x3 conv layers, width doubling, max-pool between stages."""
    trunk: list[nn.Module] = []
    cin = task.in_channels
    for stage, count in enumerate(layers):
        cout = width * 2**stage
        if stage:
            trunk.append(nn.MaxPool2d(2))
        for _ in range(count):
            same = cin == cout
            branch = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                   nn.ReLU(inplace=True))
            # a plain layer; deleting it (lesion) leaves y = x where the shape allows
            trunk.append(ResidualBlock(branch, nn.Identity() if same else None, has_identity=False,
                                       same_shape=same, stage=stage))
            cin = cout
    return init_weights(FlowModel(nn.Sequential(*trunk), make_head(task, cin)))


vgg.natural = ("classification",)
