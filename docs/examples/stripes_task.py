"""A task plugin for bench, both task kinds from one generator: run it with `--plugin stripes_task.py`.

A factory receives exactly its YAML keys (validated against this signature) and returns a ``Task``.
It is NOT given the study's seed: the data must be the same for every seed of a study, so a data
seed is a parameter of its own (``data_seed``); the study seeds vary initialisation, batch order and
augmentation, which bench draws inside ``Split.batches``.

Kinds: ``TaskInfo("classification", C)`` wants labels (N,) int64; ``TaskInfo("segmentation", C,
ignore_index=255)`` wants masks (N, H, W) int64, pixels equal to ``ignore_index`` left out of loss and
metrics. ``TensorSplit`` holds images as uint8 (N, C, H, W) and normalises each batch as
(x / 255 - mean) / std: ``mean``/``std`` are per channel on the 0..1 scale (compute them on the
training split). Files too large for memory use ``DatasetSplit`` with a torch Dataset instead (see
``bench.tasks.folders``); its items are already normalised float tensors.
"""

from __future__ import annotations

from typing import Literal

import torch

from bench.data import Task, TaskInfo, TensorSplit
from bench.registry import TASKS


def make(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images with one striped square; returns images uint8, orientation (N,), masks (N, H, W)."""
    images = torch.randint(0, 96, (n, 3, size, size), generator=g, dtype=torch.uint8)
    orientation = torch.randint(0, 2, (n,), generator=g)
    masks = torch.zeros(n, size, size, dtype=torch.int64)
    stripes = (torch.arange(size) // 2 % 2).bool()
    side = size // 2
    for i in range(n):
        top, left = torch.randint(0, size - side + 1, (2,), generator=g).tolist()
        pattern = stripes[:side, None] if orientation[i] == 0 else stripes[None, :side]  # rows or columns
        patch = pattern.expand(side, side)
        images[i, :, top:top + side, left:left + side] = torch.where(patch, 255, 128).to(torch.uint8)
        masks[i, top:top + side, left:left + side] = 1 + orientation[i]  # 0 = background
    return images, orientation, masks


@TASKS.register("stripes")
def stripes(kind: Literal["classification", "segmentation"] = "classification", n_train: int = 256,
            n_test: int = 128, image_size: int = 16, data_seed: int = 0) -> Task:
    """Striped squares: classify the stripes' orientation, or segment the square by orientation."""
    g = torch.Generator().manual_seed(data_seed)
    x_train, y_train, m_train = make(n_train, image_size, g)
    x_test, y_test, m_test = make(n_test, image_size, g)
    scaled = x_train.float() / 255
    mean, std = tuple(scaled.mean((0, 2, 3)).tolist()), tuple(scaled.std((0, 2, 3)).tolist())
    if kind == "classification":
        info = TaskInfo("classification", 2, in_channels=3, image_size=(image_size, image_size),
                        class_names=("horizontal", "vertical"))
        train, test = (x_train, y_train), (x_test, y_test)
    else:
        info = TaskInfo("segmentation", 3, in_channels=3, image_size=(image_size, image_size), ignore_index=255,
                        class_names=("background", "horizontal", "vertical"), background_index=0)
        train, test = (x_train, m_train), (x_test, m_test)
    return Task(info,
                TensorSplit(*train, mean, std, pad=2, flip=True),  # training: batched pad-crop + flip
                TensorSplit(*test, mean, std),  # evaluation batches are never augmented
                description=f"stripes ({kind})", provenance={"data_seed": data_seed})
