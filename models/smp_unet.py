"""U-Net from segmentation-models-pytorch with a timm/torchvision ResNet encoder.

Encoder residual blocks are adapted to ``ResidualBlock``s and each decoder block's long skip goes
through a ``Merge('concat')`` — the decoder block's forward is re-stated with smp's own submodules,
in smp's order — so lesions (encoder) and skip ablations (decoder) both apply. Input sides must be
divisible by 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import TaskInfo
from bench.flow import Merge

from .adapters import adapt_layers
from .heads import make_head
from .pretrained import load_checkpoint


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
        if skip_connection is not None:
            feature_map = b.attention1(self.merge(skip_connection, feature_map))
        return b.attention2(b.conv2(b.conv1(feature_map)))


class SmpUNet(nn.Module):
    def __init__(self, net: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.decoder, self.head = net.encoder, net.decoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)), x.shape[-2:])


def smp_unet(task: TaskInfo, encoder: str = "resnet18", encoder_weights: str | None = None,
             checkpoint: str | None = None, decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> SmpUNet:
    """segmentation-models-pytorch U-Net, ResNet encoder blocks and decoder skips addressable; optional weights."""
    import segmentation_models_pytorch as smp

    net = smp.Unet(encoder_name=encoder, encoder_weights=encoder_weights, in_channels=task.in_channels, classes=1,
                   decoder_channels=list(decoder_channels))
    pretraining = {"source": "smp", "weights": f"{encoder}/{encoder_weights}"} if encoder_weights else None
    if checkpoint:
        pretraining = load_checkpoint(net.encoder, checkpoint)
    adapt_layers(net.encoder, [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(net.encoder, n)])
    skip_channels = list(net.encoder.out_channels[1:])[::-1][1:] + [0]
    blocks = net.decoder.blocks
    levels = len(blocks)
    for i, block in enumerate(list(blocks)):
        blocks[i] = SkipDecoderBlock(block, level=levels - 1 - i, channels=skip_channels[i])
    model = SmpUNet(net, make_head(task, decoder_channels[-1]))
    model.pretraining = pretraining
    return model


smp_unet.natural = ("segmentation",)
