"""classify_among: the classification twin of a segmentation task whose label is the dominant class AMONG a
listed subset of the source's classes, on the SAME images.

Why: a twin's class that is the dominant class of almost no training image cannot be learnt, and a few test
images of it swing balanced accuracy (CamVid at 96x128: car is dominant in 1 training image and 4 test images;
docs/protocols.md, "Stable twins"). Only the listed classes compete: the label is the place, in ``classes``, of
the one with the most pixels, so an image dominated by an unlisted class is labelled by the largest listed class
in it and keeps its place (the verdict's bootstrap stays paired with the dense task). An image with no listed
pixel is unlabelled as in ``classify_from_masks`` (labelled background only if the background is listed, else
dropped). Same images, same augmentation, the label recomputed from each augmented training mask.

Why a task of its own and not an option of ``classify_from_masks``: ``bench.tasks.synthetic`` imports
``bench.tasks.derived``, so an edit there changes the code hash (``bench.codehash``) of every synthetic task and
would make every committed synthetic study's cells stale. This module reuses derived's pieces unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch

from bench.data import Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.limits import ClassIndex
from bench.registry import TASKS
from bench.tasks.derived import _check as check_source
from bench.tasks.derived import _derive, _status, dominant_labels


def dominant_among(masks: torch.Tensor, num_classes: int, ignore: int | None, skip: int | None,
                   keep: list[int]) -> torch.Tensor:
    """(N,) the place in ``keep`` of each mask's most frequent listed class (``skip`` and ignored pixels not
    counted; ties -> the lower class index); -1 if the mask has no listed pixel."""
    other = num_classes  # one past the source's classes: unlisted and ignored pixels go there, and are not counted
    listed = torch.isin(masks, torch.tensor(keep, dtype=masks.dtype))
    winner = dominant_labels(torch.where(listed, masks, other), num_classes + 1, other, skip)
    place = torch.full((num_classes + 1,), -1, dtype=torch.long)
    place[keep] = torch.arange(len(keep))
    return torch.where(winner < 0, -1, place[winner.clamp(min=0)])


def classify_among(source: dict, classes: list[ClassIndex], skip_background: bool = True,
                   unlabelled: Literal["background", "drop"] = "background") -> Task:
    """Classification twin of a segmentation task on the same images: label = dominant class among ``classes``."""
    seg = TASKS.build(source)
    si = seg.info
    if si.kind != "segmentation":
        raise BenchError(f"classify_among.source: {source['name']!r} is a {si.kind} task; give a segmentation task")
    if any(not 0 <= c < si.num_classes for c in classes):
        raise BenchError(f"classify_among.classes: class indices must be in 0..{si.num_classes - 1} ({source['name']} "
                         f"has {si.num_classes} classes), got {classes}; fix the list")
    skip = si.background_index if skip_background else None
    background = si.background_index if unlabelled == "background" and si.background_index in classes else None
    place = None if background is None else classes.index(background)

    def rule(masks: torch.Tensor) -> torch.Tensor:
        y = dominant_among(masks, si.num_classes, si.ignore_index, skip, list(classes))
        return y if place is None else torch.where(y < 0, place, y)

    train = _derive(seg.train, rule(seg.train.targets()), True, rule)
    test = _derive(seg.test, rule(seg.test.targets()), False, rule)
    if not len(train) or not len(test):
        raise BenchError(f"classify_among: no {'training' if not len(train) else 'test'} image has a pixel of "
                         f"classes {classes}; list classes the masks contain")
    size = tuple(test.images.shape[-2:]) if isinstance(test, TensorSplit) else tuple(test.eval_dataset[0][0].shape[-2:])
    names = si.class_names or tuple(str(i) for i in range(si.num_classes))
    info = TaskInfo("classification", len(classes), si.in_channels, size, class_names=tuple(names[c] for c in classes),
                    background_index=place)
    dropped = len(seg.test) - len(test)
    return Task(info, train, test, provenance={
        "source": source, "classes": list(classes), "skip": skip, "unlabelled": unlabelled, "test_images": len(test),
        "source_test_images": len(seg.test), "dropped_train_images": len(seg.train) - len(train),
        "dropped_test_images": dropped, "paired_with_source": dropped == 0, "source_provenance": seg.provenance})


def _check(source: dict, classes: list[int] | None = None, **_) -> None:
    """The source gets every check a top-level task gets (``classify_from_masks``' own), and the class list what
    can be checked without building the source: two or more distinct indices."""
    check_source(source)
    if classes is not None and (len(set(classes)) != len(classes) or len(classes) < 2):
        raise BenchError(f"classes: needs two or more distinct class indices, got {classes}; list the classes a "
                         "label may take")


classify_among.check = _check
classify_among.status = _status
classify_among.kind = "classification"
classify_among.twin_of_source = True  # bench.config's multi_head check: the same images as its source
