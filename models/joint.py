"""Both heads in one network (``multi_head``): an architecture's trunk with a dense and a global head.

``joint_model(model, dense, global_)`` takes an architecture built for the dense task (its ``model.head`` is the
``make_head`` segmentation head) and puts beside it a classification head reading the SAME feature map: global
average pooling + linear, as the architecture's own classification head would (docs/protocols.md, "Where each
architecture's classification head reads"; on a U-Net the last decoder map, after every long skip). The two
arms of a study then differ only in whether the trunk is shared, not in where the global head reads.

``JointHeads.read`` says what the forward pass returns: ``"both"`` (a tuple, dense first: joint training), or one
head's logits (``"dense"``/``"global"``), so a cell evaluates and ablates the network through its own head with
the code every other cell uses. ``read`` is not part of the weights (``state_dict``).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch
from torch import nn

from bench.data import TaskInfo

from .heads import ClassifierHead, SegmentationHead

Read = Literal["dense", "global", "both"]


class JointHeads(nn.Module):
    """The dense head and the global head on one feature map; ``read`` picks the output."""

    def __init__(self, dense: nn.Module, global_: nn.Module, read: Read = "both"):
        super().__init__()
        self.dense, self.global_ = dense, global_
        self.read: Read = read

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.read == "both":
            return self.dense(x, size), self.global_(x, size)
        return (self.dense if self.read == "dense" else self.global_)(x, size)


def joint_model(model: nn.Module, dense: TaskInfo, global_: TaskInfo) -> nn.Module:
    """``model`` (built for ``dense``) with a ``JointHeads`` in place of its head: its own segmentation head and a
    classification head for ``global_`` on the same map (drawn from the torch RNG after the model's weights)."""
    head = getattr(model, "head", None)
    if not isinstance(head, SegmentationHead):
        raise ValueError(f"{type(model).__name__} has no make_head segmentation head at model.head (found "
                         f"{type(head).__name__}), so it cannot carry a second head; train it as separate networks")
    model.head = JointHeads(head, ClassifierHead(head.conv.in_channels, global_.num_classes))
    return model


def heads_of(model: nn.Module) -> JointHeads:
    head = getattr(model, "head", None)
    if not isinstance(head, JointHeads):
        raise TypeError(f"{type(model).__name__} is not a joint network (no JointHeads at model.head)")
    return head


def set_read(model: nn.Module, read: Read) -> nn.Module:
    """What the joint ``model``'s forward pass returns from now on (``JointHeads.read``)."""
    heads_of(model).read = read
    return model


def weights_hash(model: nn.Module) -> str:
    """``sha256:<16 hex>`` of the model's state (every parameter and buffer, in standard layout): two cells that
    hold the same trained network record the same hash."""
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        digest.update(name.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes() if t.dtype != torch.bfloat16
                      else t.detach().cpu().float().contiguous().numpy().tobytes())
    return f"sha256:{digest.hexdigest()[:16]}"
