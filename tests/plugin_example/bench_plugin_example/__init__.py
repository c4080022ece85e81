"""A third-party architecture plugin for bench: a tiny residual net, installed with pip."""

from torch import nn

from bench.data import TaskInfo
from bench.flow import ResidualBlock
from bench.models.heads import FlowModel, make_head


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


def block(cin: int, cout: int, stride: int, stage: int) -> ResidualBlock:
    branch = nn.Sequential(conv_bn(cin, cout, stride), nn.ReLU(), conv_bn(cout, cout))
    same = cin == cout and stride == 1
    shortcut = nn.Identity() if same else nn.Conv2d(cin, cout, 1, stride, bias=False)
    return ResidualBlock(branch, shortcut, post=nn.ReLU(), same_shape=same, stage=stage,
                         shortcut_kind="identity" if same else "projection")


def tiny_resnet(task: TaskInfo, width: int = 8, blocks_per_stage: int = 2) -> FlowModel:
    """Tiny residual net from a pip-installed plugin (two stages, projection shortcuts)."""
    layers: list[nn.Module] = [conv_bn(task.in_channels, width), nn.ReLU()]
    cin = width
    for stage, cout in enumerate((width, 2 * width)):
        for i in range(blocks_per_stage):
            layers.append(block(cin, cout, 2 if stage and i == 0 else 1, stage))
            cin = cout
    return FlowModel(nn.Sequential(*layers), make_head(task, cin))


tiny_resnet.natural = ("classification",)  # `bench list` marks other task kinds as controls
