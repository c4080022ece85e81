"""classify_from_masks: the classification twin of a segmentation task, on the SAME images.

Per-image label from the unaugmented mask. Rules: ``dominant`` — the class with the most pixels,
ignoring the ignore index and the task's background class (``skip_background``); images with no such
pixel are dropped (the kept test images stay in their original order). Training adds only a
horizontal flip, so the whole image — and the label's evidence — is always seen. This is the
control that lets a study compare dense and global prediction on identical pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.utils.data import Dataset

from bench.data import DatasetSplit, Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.registry import TASKS


def dominant_labels(masks: torch.Tensor, num_classes: int, ignore: int | None, skip: int | None) -> torch.Tensor:
    """(N,) most frequent class per mask; -1 where no countable pixel."""
    flat = masks.flatten(1)
    valid = torch.ones_like(flat, dtype=torch.bool) if ignore is None else flat != ignore
    counts = torch.zeros(len(flat), num_classes, dtype=torch.int64)
    counts.scatter_add_(1, torch.where(valid, flat, 0), valid.long())
    if skip is not None:
        counts[:, skip] = 0
    labels = counts.argmax(1)
    return torch.where(counts.max(1).values > 0, labels, torch.full_like(labels, -1))


class _Relabelled(Dataset):
    def __init__(self, base: Dataset, indices: list[int], labels: torch.Tensor, flip: bool):
        self.base, self.indices, self.labels, self.flip = base, indices, labels, flip

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, _ = self.base[self.indices[i]]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


def _derive(split, info: TaskInfo, skip: int | None, train: bool):
    labels = dominant_labels(split.targets(), info.num_classes, info.ignore_index, skip)
    keep = (labels >= 0).nonzero().flatten()
    if not len(keep):
        raise BenchError("classify_from_masks: no image has a countable non-background pixel; check the source task")
    if isinstance(split, TensorSplit):
        return TensorSplit(split.images[keep], labels[keep], split.mean, split.std, pad=split.pad if train else 0,
                           flip=train)
    idx = keep.tolist()
    ds = split.eval_dataset
    return DatasetSplit(_Relabelled(ds, idx, labels[keep], flip=train), _Relabelled(ds, idx, labels[keep], False),
                        workers=split.workers, label_fn=lambda: labels[keep])


def classify_from_masks(source: dict, rule: Literal["dominant"] = "dominant", skip_background: bool = True) -> Task:
    """Classification twin of a segmentation task on the same images: label = dominant non-background class."""
    spec = dict(source)
    if "name" not in spec:
        raise BenchError("classify_from_masks.source: needs {name: <segmentation task>, ...}; add name")
    seg = TASKS.get(spec.pop("name"))(**spec)
    if seg.info.kind != "segmentation":
        raise BenchError(f"classify_from_masks.source: {source['name']!r} is a {seg.info.kind} task; give a "
                         "segmentation task")
    skip = seg.info.background_index if skip_background else None
    classes = seg.info.class_names or tuple(str(i) for i in range(seg.info.num_classes))
    info = TaskInfo("classification", seg.info.num_classes, seg.info.in_channels, seg.info.image_size,
                    class_names=classes)
    train, test = _derive(seg.train, seg.info, skip, True), _derive(seg.test, seg.info, skip, False)
    return Task(info, train, test, provenance={"source": source, "rule": rule, "skip": skip,
                                               "test_images": len(test), "source_test_images": len(seg.test)})
