"""Synthetic paired tasks: the SAME procedurally generated images, labelled per image or per pixel.

Generator: each image has a smooth random-colour background and 1..``max_objects`` objects. An
object's class fixes its shape (disc, square, triangle, ring, cross, diamond, ...) and a stripe
texture (orientation and frequency per class, strength ``texture``); its colour is random.
Per-pixel target: 0 = background, c + 1 = object class c. Per-image target: the class covering the
most pixels (the ``classify_from_masks`` 'dominant' rule). Gaussian pixel noise ``noise``.
The dense task can be read locally (texture, edges), the image label needs global context (which
object is largest): exactly the contrast the benchmark studies. Same ``seed`` -> same images.
Difficulty (``texture_similarity``, 0 = the generator as it always was): the background takes on the objects'
texture statistics (colour, stripes), so local pixel statistics stop telling object from background; the labels,
the objects and the noise stay the same for a seed (docs/protocols.md, synthetic_shapes section).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from bench.data import Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.limits import MAX_MEMORY, Classes, Count, Examples, Fraction, Pixels, Seed, gib
from bench.tasks.derived import dominant_labels

SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "bar", "halfdisc")


def _shape_mask(kind: str, yy: torch.Tensor, xx: torch.Tensor, r: float) -> torch.Tensor:
    ax, ay = xx.abs(), yy.abs()
    if kind == "disc":
        return xx**2 + yy**2 <= r**2
    if kind == "square":
        return (ax <= r * 0.85) & (ay <= r * 0.85)
    if kind == "triangle":
        return (yy <= r * 0.8) & (yy >= 2 * ax - r)
    if kind == "ring":
        d = (xx**2 + yy**2).sqrt()
        return (d <= r) & (d >= r * 0.55)
    if kind == "cross":
        return ((ax <= r * 0.3) & (ay <= r)) | ((ay <= r * 0.3) & (ax <= r))
    if kind == "diamond":
        return ax + ay <= r
    if kind == "bar":
        return (ax <= r) & (ay <= r * 0.4)
    return (xx**2 + yy**2 <= r**2) & (yy >= 0)


BACKGROUND_STREAM = 1 << 40  # offset of the background generator's seed from the image generator's


def textured_field(g: torch.Generator, yy: torch.Tensor, xx: torch.Tensor, angles: list[float], freqs: list[float],
                   texture: float) -> torch.Tensor:
    """A whole-image surface drawn as an object's is: one random colour and the stripe texture of a random class
    (its orientation and frequency, a random phase), strength ``texture``. At ``texture_similarity`` 1 the
    background is this, so a pixel's neighbourhood looks the same inside and outside an object: only the seams
    (the texture and colour change at an object's edge) and the shapes, read over a wider context, remain."""
    c = int(torch.randint(0, len(angles), (1,), generator=g))
    phase = 2 * math.pi * float(torch.rand(1, generator=g))
    colour = torch.rand(3, 1, 1, generator=g)
    stripes = torch.sin(freqs[c] * (xx * math.cos(angles[c]) + yy * math.sin(angles[c])) + phase)
    return colour * (1 - texture / 2) + texture / 2 * (stripes > 0).float()


def generate(n: int, *, num_classes: int, size: int, max_objects: int, noise: float, texture: float,
             seed: int, texture_similarity: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return images (n, 3, size, size) uint8 and masks (n, size, size) int64 (0 = background).

    ``texture_similarity`` s in [0, 1] blends each background towards an object-like surface (``textured_field``):
    ``(1 - s) * smooth + s * textured``. Its draws come from a second generator, so the masks, the objects and
    the noise are the same at every s for one seed, and s = 0 is the generator as it was before the knob.
    """
    g = torch.Generator().manual_seed(seed)
    g_bg = torch.Generator().manual_seed(seed + BACKGROUND_STREAM)  # never touches g: labels are the same at every s
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.empty(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.int64)
    angles = [math.pi * c / num_classes for c in range(num_classes)]
    freqs = [0.5 + 0.35 * (c % 3) for c in range(num_classes)]
    for i in range(n):
        low = torch.rand(3, 4, 4, generator=g)
        bg = torch.nn.functional.interpolate(low[None], size=(size, size), mode="bilinear",
                                             align_corners=False)[0]
        img = 0.25 + 0.5 * bg
        if texture_similarity > 0:  # s = 0 skips it: bit for bit the images from before the knob
            tex = textured_field(g_bg, yy, xx, angles, freqs, texture)
            img = (1 - texture_similarity) * img + texture_similarity * tex
        mask = torch.zeros(size, size, dtype=torch.int64)
        for _ in range(int(torch.randint(1, max_objects + 1, (1,), generator=g))):
            c = int(torch.randint(0, num_classes, (1,), generator=g))
            r = float(size * (0.12 + 0.2 * torch.rand(1, generator=g)))
            cy, cx = (torch.rand(2, generator=g) * (size - 2 * r) + r).tolist()
            m = _shape_mask(SHAPES[c % len(SHAPES)], yy - cy, xx - cx, r)
            stripes = torch.sin(freqs[c] * ((xx - cx) * math.cos(angles[c]) + (yy - cy) * math.sin(angles[c])))
            colour = torch.rand(3, 1, 1, generator=g)
            obj = colour * (1 - texture / 2) + texture / 2 * (stripes > 0).float()
            img = torch.where(m, obj, img)
            mask[m] = c + 1
        images[i] = img
        masks[i] = mask
    images = images + noise * torch.randn(images.shape, generator=g) * 0.25
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), masks


def dominant_class(masks: torch.Tensor, num_classes: int, skip: int | None = 0) -> torch.Tensor:
    """Per-image label: the class with most pixels, ignoring ``skip`` (background); ties -> lowest index.

    The ``classify_from_masks`` rule (every generated image has a visible object, so never -1 here).
    """
    return dominant_labels(masks, num_classes, None, skip)


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1].

    A split with fewer than two values per channel has no spread to measure (n_train 0 is rejected
    later with its own message): it gets mean 0.5, std 1 instead of torch's NaN and warning.
    """
    channels = x.shape[1]
    if x.numel() < 2 * channels:
        return (0.5,) * channels, (1.0,) * channels
    scaled = x.float() / 255
    return tuple(scaled.mean((0, 2, 3)).tolist()), tuple(scaled.std((0, 2, 3)).tolist())


def synthetic_shapes(target: Literal["image", "pixel"] = "pixel", num_classes: Classes = 4, image_size: Pixels = 32,
                     n_train: Examples = 2000, n_test: Examples = 500, max_objects: Count = 3, noise: Fraction = 0.3,
                     texture: Fraction = 0.5, texture_similarity: Fraction = 0.0, seed: Seed = 0) -> Task:
    """Synthetic shapes, paired: the same images labelled per pixel (target=pixel) or per image (target=image).

    ``texture_similarity`` (0 easy .. 1 hard; Kamath et al., MICCAI 2023): how much the background takes on the
    objects' texture statistics; the labels do not depend on it."""
    kw = dict(num_classes=num_classes, size=image_size, max_objects=max_objects, noise=noise, texture=texture,
              texture_similarity=texture_similarity)
    x_tr, m_tr = generate(n_train, seed=seed * 2 + 1, **kw)
    x_te, m_te = generate(n_test, seed=seed * 2 + 2, **kw)
    names = tuple(SHAPES[c % len(SHAPES)] for c in range(num_classes))
    labels = (dominant_class(m_tr, num_classes + 1) - 1, dominant_class(m_te, num_classes + 1) - 1)
    return paired_task(target, (x_tr, m_tr, labels[0]), (x_te, m_te, labels[1]), names,
                       provenance={"generator": "synthetic_shapes", "seed": seed, "n_train": n_train, "n_test": n_test,
                                   "texture_similarity": texture_similarity})


Generated = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images uint8, masks (0 = background), labels


def paired_task(target: str, train: Generated, test: Generated, names: tuple[str, ...], provenance: dict) -> Task:
    """A generated split pair labelled per pixel (masks: segmentation, class c -> c + 1, 0 = background) or per
    image (labels: classification), on the same images; normalised by the training images' statistics."""
    (x_tr, m_tr, l_tr), (x_te, m_te, l_te) = train, test
    mean, std = channel_stats(x_tr)
    size = tuple(x_tr.shape[-2:])
    if target == "pixel":
        info = TaskInfo("segmentation", len(names) + 1, 3, size, ignore_index=None,
                        class_names=("background", *names), background_index=0)
        y_tr, y_te = m_tr, m_te
    else:
        info = TaskInfo("classification", len(names), 3, size, class_names=names)
        y_tr, y_te = l_tr, l_te
    return Task(info, TensorSplit(x_tr, y_tr, mean, std, pad=2), TensorSplit(x_te, y_te, mean, std, pad=2),
                provenance=provenance)


def _check(target: str = "pixel", image_size: int = 32, n_train: int = 2000, n_test: int = 500, **_) -> None:
    """Refuse a generated data set that could not be held in memory (uint8 images + int64 masks)."""
    need = (n_train + n_test) * image_size**2 * (3 + 8)
    if need > MAX_MEMORY:
        raise BenchError(f"n_train + n_test = {n_train + n_test:,} images of {image_size}x{image_size} would take "
                         f"{gib(need)} in memory, over the limit of {gib(MAX_MEMORY)}; make fewer or smaller images")


synthetic_shapes.check = _check
synthetic_shapes.kind = lambda target="pixel", **_: "segmentation" if target == "pixel" else "classification"
