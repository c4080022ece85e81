"""Any timm ResNet-family model (BasicBlock/Bottleneck) with its blocks adapted to merge points.

timm's stem and blocks form the trunk of a ``FlowModel``; timm's classifier is replaced by a bench head,
so the same model serves classification and segmentation (FCN head on the stride-32 feature map).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.data import TaskInfo
from bench.errors import did_you_mean

from .adapters import adapt_layers
from .heads import FlowModel, make_head
from .pretrained import fetch_failed, load_checkpoint

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def timm_resnet(task: TaskInfo, model_name: str = "resnet18", pretrained: bool = False,
                checkpoint: str | None = None, model_kwargs: dict[str, Any] | None = None) -> FlowModel:
    """timm ResNet family (resnet18/34/50, resnext, seresnet, -d variants) via a block adapter; optional weights.

    ``checkpoint``: a local state dict in timm/torchvision naming or saved from this bench model.
    ``model_kwargs`` go to ``timm.create_model`` (e.g. drop_path_rate, channels, stem_width).
    """
    import timm

    if not timm.is_model(model_name):
        raise ValueError(f"model_name {model_name!r} is not a timm model"
                         f"{did_you_mean(model_name, timm.list_models('*res*'))}")
    try:
        net = timm.create_model(model_name, pretrained=pretrained, num_classes=0, global_pool="",
                                in_chans=task.in_channels, **(model_kwargs or {}))
    except (OSError, RuntimeError) as exc:  # no network / no such pretrained tag
        if not pretrained:
            raise
        raise fetch_failed(f"timm_resnet {model_name}", exc) from None
    layers = [n for n in LAYERS if isinstance(getattr(net, n, None), nn.Sequential)]
    if not layers or not all(hasattr(net, n) for n in ("conv1", "bn1", "act1", "maxpool")):
        raise ValueError(f"model_name {model_name!r} is not a timm ResNet (no conv1/bn1/act1/maxpool + layer1..4); "
                         "pick e.g. resnet18, resnet50, resnext50_32x4d, seresnet50, resnet50d")
    original = net.state_dict(keep_vars=True)
    adapt_layers(net, layers)
    trunk = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool, *(b for n in layers for b in getattr(net, n)))
    model = FlowModel(trunk, make_head(task, net.num_features))
    model.pretraining = None
    if pretrained:
        model.pretraining = {"source": "timm", "weights": net.pretrained_cfg.get("hf_hub_id") or model_name}
    if checkpoint:
        model.pretraining = load_checkpoint(checkpoint, original, model.state_dict(keep_vars=True))
    return model


timm_resnet.natural = ("classification",)
