"""Density × detail: one object per image, labelled per pixel or per image, told apart by coarse or fine evidence.

Why: in ``synthetic_shapes`` the class is carried by shape AND texture, so a U-Net losing its long skips
could hurt segmentation because the output is dense or because dense labels need fine detail. This
generator separates the two. Every object has a shape (disc, square, triangle, cross) and a
one-pixel texture (flat, checker, horizontal or vertical stripes of period 2, random sign):

* ``evidence: coarse`` — the class fixes the SHAPE; the texture is drawn at random (carries nothing).
* ``evidence: fine``   — the class fixes the TEXTURE; the shape is drawn at random (carries nothing).

Every texture has mean 0 over each 2×2 tile, so a 4× area downsample erases it (up to the object's edge)
while shapes survive: the tests check this with a small classifier. Each image holds exactly one
object, so the per-image target (``target: image``) is the object's class and the per-pixel target
(``target: pixel``) labels the same object's pixels with class + 1 (0 = background): the global task
is an ordinary classification of the very object the dense task outlines. Same ``seed`` and
``evidence`` -> the same images for both targets. Parameters: docs/protocols.md (synthetic section).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from bench.data import Task
from bench.limits import Examples, Fraction, Pixels, Seed
from bench.tasks.synthetic import _check, _shape_mask, paired_task

SHAPES = ("disc", "square", "triangle", "cross")
TEXTURES = ("flat", "checker", "hstripes", "vstripes")


def texture_pattern(kind: str, size: int) -> torch.Tensor:
    """(size, size) pattern in {-1, 0, +1}: period 2, mean 0 over every aligned 2×2 tile."""
    idx = torch.arange(size)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    if kind == "flat":
        return torch.zeros(size, size)
    if kind == "checker":
        return 1.0 - 2.0 * ((yy + xx) % 2).float()
    if kind == "hstripes":
        return 1.0 - 2.0 * (yy % 2).float()
    return 1.0 - 2.0 * (xx % 2).float()


def generate_detail(n: int, *, evidence: Literal["coarse", "fine"], num_classes: int, size: int,
                    radius: tuple[float, float], contrast: float, noise: float,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (n, 3, size, size) uint8, masks (n, size, size) int64 (0 = background, c + 1 = class c),
    labels (n,) int64 (the one object's class)."""
    if not 2 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be 2..{len(SHAPES)}")
    g = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    patterns = torch.stack([texture_pattern(t, size) for t in TEXTURES])
    images = torch.empty(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.int64)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    # the uninformative attribute is drawn from the same num_classes values, so both axes have equal entropy
    other = torch.randint(0, num_classes, (n,), generator=g)
    for i in range(n):
        low = torch.rand(3, 4, 4, generator=g)
        bg = torch.nn.functional.interpolate(low[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        img = 0.25 + 0.5 * bg
        c, o = int(labels[i]), int(other[i])
        shape, tex = (c, o) if evidence == "coarse" else (o, c)
        r = size * float(radius[0] + (radius[1] - radius[0]) * torch.rand(1, generator=g))
        cy, cx = (torch.rand(2, generator=g) * (size - 2 * r - 2) + r + 1).tolist()
        m = _shape_mask(SHAPES[shape], yy - cy, xx - cx, r)
        sign = 1.0 if float(torch.rand(1, generator=g)) < 0.5 else -1.0  # no absolute-phase cue
        colour = 0.2 + 0.6 * torch.rand(3, 1, 1, generator=g)
        obj = colour + sign * contrast * patterns[tex]
        img = torch.where(m, obj, img)
        images[i] = img
        masks[i][m] = c + 1
    images = images + noise * torch.randn(images.shape, generator=g)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), masks, labels


Radius = Annotated[float, Field(gt=0, lt=0.45, description="object radius as a fraction of image_size")]


def synthetic_detail(target: Literal["pixel", "image"] = "pixel", evidence: Literal["coarse", "fine"] = "coarse",
                     num_classes: Annotated[int, Field(ge=2, le=4)] = 4, image_size: Pixels = 32,
                     n_train: Examples = 2000, n_test: Examples = 500, radius_min: Radius = 0.3,
                     radius_max: Radius = 0.42, contrast: Fraction = 0.15, noise: Fraction = 0.08,
                     seed: Seed = 0) -> Task:
    """Density × detail task (module docstring): ``target`` picks the output density, ``evidence`` the
    scale of the class cue; the images depend only on ``evidence``, sizes, ``seed`` and the generator knobs."""
    if radius_min <= 0 or radius_max < radius_min or radius_max >= 0.45:
        raise ValueError("need 0 < radius_min <= radius_max < 0.45 (object must fit the image)")
    kw = dict(evidence=evidence, num_classes=num_classes, size=image_size, radius=(radius_min, radius_max),
              contrast=contrast, noise=noise)
    x_tr, m_tr, l_tr = generate_detail(n_train, seed=seed * 2 + 1, **kw)
    x_te, m_te, l_te = generate_detail(n_test, seed=seed * 2 + 2, **kw)
    names = tuple((SHAPES if evidence == "coarse" else TEXTURES)[:num_classes])
    return paired_task(target, (x_tr, m_tr, l_tr), (x_te, m_te, l_te), names,
                       provenance={"generator": "synthetic_detail", "evidence": evidence, "seed": seed,
                                   "n_train": n_train, "n_test": n_test})


synthetic_detail.check = _check  # the same memory bound as synthetic_shapes (validate, before generating)
synthetic_detail.kind = lambda target="pixel", **_: "segmentation" if target == "pixel" else "classification"
