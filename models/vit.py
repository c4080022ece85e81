"""A tiny pre-norm Vision Transformer (Dosovitskiy et al. 2021) with its residual stream declared.

Each transformer block is a ``BlockGroup`` of two residual branches, x + attn(norm1(x)) then
x + mlp(norm2(x)), each a ``ResidualBlock`` with an identity shortcut (``branch_kind`` "attention" /
"mlp"): a lesion of a branch is y = x exactly, ``reorder`` exchanges whole blocks, ``path_gradients``
sees 2 x depth branches in series, and skip removal trains the plain twin (y = branch(x), Ji et al. 2025).

Heads read the final-norm tokens (B, N, D), transposed to channels-first (B, D, N) so that a concat merge
joins features: classification from the CLS token (``pool="cls"``) or the patch-token mean; dense
prediction by a per-token linear classifier on the patch tokens, reshaped to (B, C, H/p, W/p) and
bilinearly upsampled (Segmenter's linear decoder). ``taps`` adds DPT-style long skips: the tokens after
those blocks (each through its own LayerNorm) are concatenated to the final tokens by
``Merge('concat', level=i)``, so ``identity_flow`` lists them as skips and ``skip_removal`` /
``skip_lesion`` act on them. BOTH heads read the concatenation (docs/protocols.md, "Where each
architecture's classification head reads"): a classification head on the final tokens alone would never
see a tap. Tap levels are block counts (1..depth-1); the residual stream is stage 0, so ``skip_removal``
``levels`` can name the taps alone.

``stem="conv"`` replaces the patchify stem by Xiao et al.'s (2021) convolutional one (same token grid). Why:
with the patchify stem this ViT learned the synthetic shapes' dense task in 4 epochs but stayed at chance on
their global label after 10 (seed 100; configs/vit_identity.yaml's comments); with the conv stem it learns both.

Cost (depth 6, width 96, 3 heads, patch 4 on 32 px, 0.46M parameters; one AdamW step of a 32-image batch, one
torch thread, on this project's shared 2-core AMD EPYC, medians of timings of 10 steps after warm-up, U-Net
(depth 3, width 12) and ResNet-14 timed in the same process): patchify stem 145-180 images/s with the other
core busy (load 3-3.7), where the U-Net ran 243 and the ResNet 232; a step costs 1.6 U-Net steps with the
patchify stem and 1.8 with the conv stem (1.5 for classification), measured again at load 8 (U-Net 58
images/s, ViT conv stem 32). Training a 4-epoch cell on 1,000 images: about 22-27 s on an idle core
(1.8 times the 12-15 s of a shapes_decisive U-Net cell, estimated, not timed idle).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.data import TaskInfo
from bench.flow import BlockGroup, Merge, ResidualBlock
from bench.limits import MAX_DEPTH, Width


class Attention(nn.Module):
    """Multi-head self-attention (timm's layout: one qkv projection, scaled dot product, out projection)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


def mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


def transformer_block(dim: int, heads: int, hidden: int, identity: bool) -> BlockGroup:
    """x + attn(norm1(x)), then x + mlp(norm2(x)): two residual branches that move (reorder) as one."""
    def branch(module: nn.Module, kind: str) -> ResidualBlock:
        return ResidualBlock(nn.Sequential(nn.LayerNorm(dim), module), nn.Identity(), has_identity=identity,
                             branch_kind=kind)

    return BlockGroup(OrderedDict(attn=branch(Attention(dim, heads), "attention"), mlp=branch(mlp(dim, hidden), "mlp")))


def conv_stem(in_channels: int, dim: int, patch: int) -> nn.Sequential:
    """Xiao et al. 2021 (*Early Convolutions Help Transformers See Better*): log2(patch) stride-2 3x3 convolutions
    (BN, ReLU), channels doubling up to dim / 2, then a 1x1 projection to dim; the same token grid as a patchify stem."""
    layers: list[nn.Module] = []
    cin, cout = in_channels, max(dim // 2 ** (patch.bit_length() - 1), 8)
    for _ in range(patch.bit_length() - 1):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin, cout = cout, cout * 2
    return nn.Sequential(*layers, nn.Conv2d(cin, dim, 1))


class PatchEmbed(nn.Module):
    """Patches -> tokens (B, N, D), a CLS token first when ``cls``, plus learned positions."""

    def __init__(self, in_channels: int, dim: int, patch: int, grid: tuple[int, int], cls: bool, stem: str = "patch"):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch) if stem == "patch" else conv_stem(in_channels, dim, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls else None
        self.pos = nn.Parameter(torch.zeros(1, grid[0] * grid[1] + int(cls), dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.proj(x).flatten(2).transpose(1, 2)
        if self.cls is not None:
            t = torch.cat([self.cls.expand(len(t), -1, -1), t], dim=1)
        return t + self.pos


class TokenHead(nn.Module):
    """Classification from the CLS token or the patch-token mean; segmentation by a per-token linear
    classifier on the patch tokens, upsampled to the image (Segmenter's linear decoder). Reads (B, C, N)."""

    def __init__(self, info: TaskInfo, channels: int, pool: str, prefix: int, grid: tuple[int, int]):
        super().__init__()
        self.kind, self.pool, self.prefix, self.grid = info.kind, pool, prefix, grid
        self.fc = nn.Linear(channels, info.num_classes)

    def forward(self, f: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.kind == "classification":
            return self.fc(f[:, :, 0] if self.pool == "cls" else f[:, :, self.prefix:].mean(-1))
        patches = f[:, :, self.prefix:].transpose(1, 2)  # (B, N, C): the linear acts per token
        logits = self.fc(patches).transpose(1, 2).reshape(len(f), -1, *self.grid)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class ViT(nn.Module):
    """Patch embedding, ``depth`` transformer blocks, final LayerNorm, a token head; ``taps`` long skips."""

    def __init__(self, info: TaskInfo, depth: int, width: int, heads: int, patch: int, mlp_ratio: float,
                 pool: str, taps: tuple[int, ...], identity: bool, stem: str = "patch"):
        super().__init__()
        grid = (info.image_size[0] // patch, info.image_size[1] // patch)
        self.embed = PatchEmbed(info.in_channels, width, patch, grid, cls=pool == "cls", stem=stem)
        self.blocks = nn.Sequential(*[transformer_block(width, heads, round(width * mlp_ratio), identity)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.taps = list(taps)
        self.tap_norms = nn.ModuleList([nn.LayerNorm(width) for _ in taps])
        self.skips = nn.ModuleList([Merge("concat", level=i, channels=width) for i in taps])
        self.head = TokenHead(info, width * (1 + len(taps)), pool, int(pool == "cls"), grid)
        self.apply(_init)
        nn.init.trunc_normal_(self.embed.pos, std=0.02)
        if self.embed.cls is not None:
            nn.init.trunc_normal_(self.embed.cls, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x)
        tapped = {}
        for i, block in enumerate(self.blocks, 1):
            t = block(t)
            if i in self.taps:
                tapped[i] = t
        f = self.norm(t).transpose(1, 2)  # (B, D, N): features on dim 1, as a concat merge joins them
        for i, norm, skip in zip(self.taps, self.tap_norms, self.skips):
            f = skip(norm(tapped[i]).transpose(1, 2), f)
        return self.head(f, x.shape[-2:])


def _init(m: nn.Module) -> None:
    """timm's ViT initialisation: truncated-normal linears, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


ViTDepth = Annotated[int, Field(ge=1, le=MAX_DEPTH, description="transformer blocks (2 residual branches each)")]


def vit(task: TaskInfo, depth: ViTDepth = 6, width: Width = 96,
        heads: Annotated[int, Field(ge=1, le=1024, description="attention heads (must divide width)")] = 3,
        patch: Annotated[int, Field(ge=1, le=1024, description="patch side in pixels (must divide the image)")] = 4,
        mlp_ratio: Annotated[float, Field(gt=0, le=16, description="MLP hidden width / width")] = 2.0,
        pool: Literal["cls", "mean"] = "cls",
        taps: Annotated[tuple[int, ...], Field(max_length=64, description="blocks (1..depth-1) whose tokens the heads also read, as long skips")] = (),
        stem: Literal["patch", "conv"] = "patch", has_identity: bool = True) -> ViT:
    """Tiny pre-norm ViT: attention and MLP residual branches declared per block, CLS or mean pooling,
    a Segmenter linear decoder, optional DPT-style taps as long skips; ``stem="conv"``: Xiao et al.'s
    convolutional stem; ``has_identity=False``: the plain (skipless) twin."""
    if width % heads:
        raise ValueError(f"width {width} is not divisible by heads {heads}; pick heads that divide it")
    if stem == "conv" and patch & (patch - 1):
        raise ValueError(f"stem 'conv' halves the image log2(patch) times: patch {patch} must be a power of 2")
    if any(s % patch for s in task.image_size):
        raise ValueError(f"patch {patch} does not divide the image size {tuple(task.image_size)}")
    bad = [i for i in taps if not 1 <= i < depth]
    if bad or len(set(taps)) != len(taps):
        raise ValueError(f"taps {list(taps)}: give distinct block counts in 1..{depth - 1} (the final block is always read)")
    return ViT(task, depth, width, heads, patch, mlp_ratio, pool, tuple(sorted(taps)), has_identity, stem)


vit.natural = ("classification", "segmentation")
