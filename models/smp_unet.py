"""U-Net from segmentation-models-pytorch with a ResNet encoder, its identity flow made addressable.

Encoder residual blocks (torchvision-style in smp) are adapted to ``ResidualBlock``s. Each decoder
block's long skip goes through a ``Merge('concat')``: smp concatenates inside its own forward, so the
wrapper re-states ``UnetDecoderBlock.forward`` with smp's own submodules in smp's order (a test checks
the output is unchanged) and calls the merge as a module — skip fills, skip removal, path gradients and
the forward hooks that calibrate ``fill='mean'`` all see it. Skip level k sits at 1/2^k resolution.
Input sides must be divisible by 2^encoder_depth.
"""

from __future__ import annotations

import inspect
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.data import TaskInfo
from bench.flow import Merge
from bench.limits import Width

from .adapters import adapt_layers
from .heads import make_head
from .pretrained import fetch_failed, load_checkpoint

DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's default
FORWARD = ["self", "feature_map", "target_height", "target_width", "skip_connection"]  # smp >= 0.5


class SkipDecoderBlock(nn.Module):
    """smp UnetDecoderBlock with its concatenation made a declared merge point."""

    def __init__(self, block: nn.Module, level: int, channels: int):
        super().__init__()
        self.block = block
        self.merge = Merge("concat", level=level, channels=channels) if channels else None

    def forward(self, feature_map: torch.Tensor, target_height: int, target_width: int,
                skip_connection: torch.Tensor | None = None) -> torch.Tensor:
        b = self.block
        feature_map = F.interpolate(feature_map, size=(target_height, target_width), mode=b.interpolation_mode)
        if skip_connection is not None:  # smp: torch.cat([feature_map, skip]) == Merge: cat([branch, identity])
            feature_map = b.attention1(self.merge(skip_connection, feature_map))
        return b.attention2(b.conv2(b.conv1(feature_map)))


class SmpUNet(nn.Module):
    """smp encoder + decoder, then a bench head (segmentation logits or pooled classification)."""

    def __init__(self, net: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.decoder, self.head = net.encoder, net.decoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)), x.shape[-2:])


def smp_unet(task: TaskInfo, encoder: str = "resnet18", encoder_weights: str | None = None,
             checkpoint: str | None = None, encoder_depth: Annotated[int, Field(ge=1, le=5)] = 5,
             decoder_channels: Annotated[tuple[Width, ...], Field(min_length=1, max_length=5)] | None = None) -> SmpUNet:
    """segmentation-models-pytorch U-Net, ResNet encoder blocks and decoder skips addressable; optional weights.

    ``checkpoint``: a local state dict of a whole smp Unet, of its encoder alone (torchvision ResNet
    naming), or saved from this bench model. ``decoder_channels`` defaults to smp's, one per encoder level.
    """
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock

    found = list(inspect.signature(UnetDecoderBlock.forward).parameters)
    if found != FORWARD:
        raise ValueError(f"segmentation-models-pytorch {smp.__version__}: UnetDecoderBlock.forward{tuple(found)} "
                         "is not the one the adapter re-states; install segmentation-models-pytorch>=0.5")
    channels = list(decoder_channels or DECODER_CHANNELS[:encoder_depth])
    if len(channels) != encoder_depth:
        raise ValueError(f"decoder_channels has {len(channels)} entries, encoder_depth={encoder_depth}; give one "
                         "per level")
    try:
        net = smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, encoder_depth=encoder_depth,
                       in_channels=task.in_channels, classes=1, decoder_channels=channels)
    except (OSError, RuntimeError) as exc:  # no network / unknown weights
        if not encoder_weights:
            raise
        raise fetch_failed(f"smp_unet {encoder}/{encoder_weights}", exc) from None
    enc = net.encoder
    layers = [n for n in ("layer1", "layer2", "layer3", "layer4")[: encoder_depth - 1]]
    if not all(isinstance(getattr(enc, n, None), nn.Sequential) for n in layers):
        raise ValueError(f"encoder {encoder!r} is not a ResNet encoder (layer1..4); pick resnet18/34/50/101, "
                         "resnext50_32x4d, ...")
    for n in ("layer1", "layer2", "layer3", "layer4")[max(encoder_depth - 1, 0):]:
        if hasattr(enc, n):  # smp keeps them but never runs them: declared blocks must be real
            delattr(enc, n)
    namings = [net.state_dict(keep_vars=True), enc.state_dict(keep_vars=True)]
    adapt_layers(enc, layers)
    skip_channels = list(enc.out_channels[1:])[::-1][1:] + [0]
    blocks = net.decoder.blocks
    for i, block in enumerate(list(blocks)):
        blocks[i] = SkipDecoderBlock(block, level=len(blocks) - 1 - i, channels=skip_channels[i])
    model = SmpUNet(net, make_head(task, channels[-1]))
    model.pretraining = {"source": "smp", "weights": f"{encoder}/{encoder_weights}"} if encoder_weights else None
    if checkpoint:
        model.pretraining = load_checkpoint(checkpoint, *namings, model.state_dict(keep_vars=True))
    return model


smp_unet.natural = ("segmentation",)
