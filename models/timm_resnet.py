"""Any timm ResNet-family model (BasicBlock/Bottleneck) with its blocks adapted to merge points."""

from __future__ import annotations

from torch import nn

from bench.data import TaskInfo

from .adapters import adapt_layers
from .heads import FlowModel, make_head
from .pretrained import load_checkpoint


def timm_resnet(task: TaskInfo, model_name: str = "resnet18", pretrained: bool = False,
                checkpoint: str | None = None) -> FlowModel:
    """timm ResNet family (resnet18/34/50/..., BasicBlock/Bottleneck) via an adapter; optional pretrained weights."""
    import timm

    net = timm.create_model(model_name, pretrained=pretrained, num_classes=0, global_pool="",
                            in_chans=task.in_channels)
    pretraining = {"source": "timm", "weights": model_name} if pretrained else None
    if checkpoint:
        pretraining = load_checkpoint(net, checkpoint)
    layers = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(net, n)]
    adapt_layers(net, layers)
    trunk = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool, *(b for n in layers for b in getattr(net, n)))
    model = FlowModel(trunk, make_head(task, net.num_features))
    model.pretraining = pretraining
    return model


timm_resnet.natural = ("classification",)
