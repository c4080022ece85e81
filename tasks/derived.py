"""classify_from_masks: the classification twin of a segmentation task, on the SAME images.

The source task is built from ``source`` ({name: <segmentation task>, **its params}) and each image's
stored label comes from its unaugmented mask (evaluation geometry; training may recompute it from the
augmented mask, below). When unlabelled images are labelled background, the twin declares that class its
background too (not an object class: bench.metrics). Rules:

- ``dominant``: the class with the most pixels, not counting the ignore index nor, with
  ``skip_background``, the source's background class; ties go to the lowest index. An image with no
  such pixel is ``unlabelled``: ``background`` labels it with the background class (keeps every image,
  so the twin's test set is the dense test set, in the same order, and the verdict's bootstrap is
  paired); ``drop`` removes it (kept images stay in order). A source without a background class has
  nothing to map to, so such images are dropped; provenance records how many.
- ``present_any``: binary, 1 if the image has at least ``min_pixels`` pixels of any of ``classes``.

Training uses the SOURCE's geometric augmentation (its scale, crop and flip for file-backed sources;
its pad-crop and flip for in-memory ones), so the twin and its source see the same kind of pixels. For
file-backed sources each training label is recomputed by the rule from the AUGMENTED mask, so a crop
that cuts the dominant object out changes the label with it (an augmented crop with no countable pixel
keeps the image's unaugmented label); in-memory sources shift by at most their padding, and keep the
unaugmented label. Evaluation uses the unaugmented images and labels. This is the control that lets a
study compare dense and global prediction on identical pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.utils.data import Dataset

from bench.config import check_task, task_kind
from bench.data import DatasetSplit, Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.limits import ClassIndex, Count
from bench.params import validate_params
from bench.registry import TASKS


def class_counts(masks: torch.Tensor, num_classes: int, ignore: int | None, chunk: int = 64) -> torch.Tensor:
    """(N, num_classes) pixel counts per mask, ignore index excluded; in chunks so big masks stay cheap."""
    out = torch.zeros(len(masks), num_classes, dtype=torch.int64)
    for start in range(0, len(masks), chunk):
        flat = masks[start:start + chunk].flatten(1).long()
        valid = torch.ones_like(flat, dtype=torch.bool) if ignore is None else flat != ignore
        out[start:start + chunk].scatter_add_(1, torch.where(valid, flat, 0), valid.long())
    return out


def dominant_labels(masks: torch.Tensor, num_classes: int, ignore: int | None, skip: int | None) -> torch.Tensor:
    """(N,) most frequent class per mask (ignore and ``skip`` not counted; ties -> lowest index); -1 if none."""
    counts = class_counts(masks, num_classes, ignore)
    if skip is not None:
        counts[:, skip] = 0
    labels = counts.argmax(1)
    return torch.where(counts.max(1).values > 0, labels, torch.full_like(labels, -1))


def present_labels(masks: torch.Tensor, num_classes: int, ignore: int | None, classes: list[int],
                   min_pixels: int) -> torch.Tensor:
    """(N,) 1 where the mask has >= ``min_pixels`` pixels of any of ``classes``, else 0."""
    counts = class_counts(masks, num_classes, ignore)
    return (counts[:, classes].sum(1) >= min_pixels).long()


class _Relabelled(Dataset):
    """The source's images with image labels; with ``rule``, the label is recomputed from each (augmented)
    mask the source returns, falling back to the stored label when the rule finds nothing (-1)."""

    def __init__(self, base: Dataset, indices: list[int], labels: torch.Tensor, rule=None):
        self.base, self.indices, self.labels, self.rule = base, indices, labels, rule
        self.transform = getattr(base, "transform", None)  # so bench.data.seed_transforms reaches the source's

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, mask = self.base[self.indices[i]]
        if self.rule is None:
            return x, self.labels[i]
        y = int(self.rule(torch.as_tensor(mask)[None])[0])
        return x, torch.tensor(y if y >= 0 else int(self.labels[i]))


def _derive(split, labels: torch.Tensor, train: bool, rule):
    keep = (labels >= 0).nonzero().flatten()
    if isinstance(split, TensorSplit):
        return TensorSplit(split.images[keep], labels[keep], split.mean, split.std, pad=split.pad if train else 0,
                           flip=split.flip and train)
    idx, kept = keep.tolist(), labels[keep]
    train_ds = _Relabelled(split.train_dataset, idx, kept, rule) if train else _Relabelled(split.eval_dataset, idx, kept)
    return DatasetSplit(train_ds, _Relabelled(split.eval_dataset, idx, kept), workers=split.workers,
                        label_fn=lambda: kept)


def classify_from_masks(source: dict, rule: Literal["dominant", "present_any"] = "dominant",
                        skip_background: bool = True, unlabelled: Literal["background", "drop"] = "background",
                        classes: list[ClassIndex] | None = None, min_pixels: Count = 1) -> Task:
    """Classification twin of a segmentation task on the same images: label = dominant non-background class."""
    if "name" not in source:
        raise BenchError("classify_from_masks.source: needs {name: <segmentation task>, ...}; add name")
    seg = TASKS.build(source)
    si = seg.info
    if si.kind != "segmentation":
        raise BenchError(f"classify_from_masks.source: {source['name']!r} is a {si.kind} task; give a "
                         "segmentation task")
    names = si.class_names or tuple(str(i) for i in range(si.num_classes))
    skip = si.background_index if skip_background else None
    fallback, rule_name = None, rule  # `rule` becomes the labelling function below
    if rule == "present_any":
        if not classes or any(not 0 <= c < si.num_classes for c in classes):
            raise BenchError(f"classify_from_masks.classes: rule present_any needs class indices in "
                             f"0..{si.num_classes - 1}, got {classes}; set classes: [..]")

        def rule(masks: torch.Tensor) -> torch.Tensor:
            return present_labels(masks, si.num_classes, si.ignore_index, classes, min_pixels)

        num_classes = 2
        names = ("absent", "present:" + "+".join(names[c] for c in classes))
    else:
        fallback = si.background_index if unlabelled == "background" else None

        def rule(masks: torch.Tensor) -> torch.Tensor:
            y = dominant_labels(masks, si.num_classes, si.ignore_index, skip)
            return y if fallback is None else torch.where(y < 0, fallback, y)

        num_classes = si.num_classes
    y_train, y_test = rule(seg.train.targets()), rule(seg.test.targets())
    train, test = _derive(seg.train, y_train, True, rule), _derive(seg.test, y_test, False, rule)
    if not len(train) or not len(test):
        raise BenchError(f"classify_from_masks.source: no {'training' if not len(train) else 'test'} image has a "
                         "countable non-background pixel; check the source task's masks")
    size = tuple(test.images.shape[-2:]) if isinstance(test, TensorSplit) else tuple(test.eval_dataset[0][0].shape[-2:])
    # an image without objects is labelled background: a class, but not an object one (bench.metrics)
    info = TaskInfo("classification", num_classes, si.in_channels, size, class_names=tuple(names),
                    background_index=fallback)
    dropped = len(seg.test) - len(test)
    return Task(info, train, test, provenance={
        "source": source, "rule": rule_name, "skip": skip, "unlabelled": unlabelled, "test_images": len(test),
        "source_test_images": len(seg.test), "dropped_train_images": len(seg.train) - len(train),
        "dropped_test_images": dropped, "paired_with_source": dropped == 0, "source_provenance": seg.provenance})


def _check(source: dict, **_) -> None:
    """The nested ``source`` gets the checks a top-level task gets: its name, its parameters (typos included),
    its own ``check`` hook and its kind, so ``validate`` finds what only building it found before."""
    if not isinstance(source, dict) or "name" not in source:
        raise BenchError("source: needs {name: <segmentation task>, ...}; add name")
    spec = dict(source)
    try:
        obj = TASKS.get(spec.pop("name"))
    except BenchError as exc:
        raise BenchError(f"source.name: {exc}") from None
    params = validate_params(obj, spec, "source")
    check_task(obj, params, "source")
    kind = task_kind(obj, params)
    if kind not in (None, "segmentation"):
        raise BenchError(f"source: {source['name']!r} is a {kind} task; give a segmentation task")


def _status(source: dict, **_) -> list[str]:
    """``validate``'s data lines: the source's (the twin reads the same files, fetched once)."""
    if not isinstance(source, dict) or "name" not in source:
        return []
    spec = dict(source)
    status = getattr(TASKS.get(spec.pop("name")), "status", None)
    lines = status(**spec) if callable(status) else []
    return [f"the same files as its source {source['name']}" + (f" ({lines[0]})" if lines else "")]


classify_from_masks.check = _check
classify_from_masks.status = _status
classify_from_masks.kind = "classification"
