"""Pascal VOC 2012 segmentation in the VOCdevkit layout, 21 classes, 255 = ignore.

``root`` is the folder holding ``VOCdevkit/`` (``VOCdevkit`` or ``VOC2012`` itself are accepted too);
a relative ``root`` resolves against the working directory. ``JPEGImages/``, ``SegmentationClass/``
palette PNGs read as class indices (never converted to RGB), ``ImageSets/Segmentation/{train,val}.txt``.
``train_split: train_aug`` uses the SBD-augmented ``SegmentationClassAug/`` and ``train_aug.txt``
(10,582 images) when present. Training: random scale ``scale`` + pad (mask pad 255) + random
``crop_size`` crop + horizontal flip. Evaluation pads each image to ``eval_size`` (default 512, divisible
by 32) with the ignore index, so batches stack and scores are at the original resolution (images are
at most 500x500). ``train_subset``/``test_subset`` take the first N listed images. ImageNet mean/std.
"""

from __future__ import annotations

from pathlib import Path

from bench.data import Task, TaskInfo
from bench.errors import BenchError
from bench.limits import Examples, Pixels, Scale, Workers
from bench.tasks.common import absolute, first, release
from bench.tasks.folders import file_segmentation_task
from bench.tasks.transforms import pair_files

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor")
URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
MD5 = "6cd6e144f989b92b3379bac3b3de84fd"


def _is_voc(path: Path) -> bool:
    return (path / "JPEGImages").is_dir() and (path / "ImageSets").is_dir()


def find_voc2012(root: Path) -> Path:
    """The VOC2012 folder for ``root`` = the folder holding VOCdevkit, VOCdevkit itself, or VOC2012 itself."""
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if _is_voc(candidate):
            return candidate
    if (root / "JPEGImages").is_dir():
        raise BenchError(f"{root}: has JPEGImages/ but no ImageSets/; the VOC2012 folder is incomplete: extract "
                         "VOCtrainval_11-May-2012.tar again")
    for up in (root.parent, root.parent.parent):
        if _is_voc(up):
            raise BenchError(f"{root}: this is inside the VOC2012 folder {up}; set root to {up} or to the folder "
                             "holding VOCdevkit")
    raise BenchError(f"{root}: no VOCdevkit/VOC2012 here (looked for VOCdevkit/VOC2012, VOC2012 and the folder "
                     f"itself); set root to the folder holding VOCdevkit, or download: true")


def _split(voc: Path, split: str) -> list[tuple[Path, Path]]:
    masks = voc / ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
    listing = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file() or not masks.is_dir():
        hint = " (SBD augmentation is not installed)" if split == "train_aug" else ""
        raise BenchError(f"{listing}: split list or {masks.name}/ missing{hint}; use train_split: train or add them")
    stems = [s.strip() for s in listing.read_text().split() if s.strip()]
    if not stems:
        raise BenchError(f"{listing}: the split is empty; restore the list")
    return pair_files(voc / "JPEGImages", masks, stems)


def voc2012(root: str = "data", download: bool = False, train_split: str = "train", test_split: str = "val",
            crop_size: Pixels = 512, scale: tuple[Scale, Scale] = (0.5, 2.0), eval_size: Pixels = 512,
            train_subset: Examples | None = None, test_subset: Examples | None = None, workers: Workers = 2) -> Task:
    """Pascal VOC 2012 segmentation (VOCdevkit layout, palette masks as indices, 255 ignored; optional SBD aug)."""
    base = absolute(root)
    if download and not (base / "VOCdevkit").is_dir() and not _is_voc(base):
        release(URL, MD5, base, download_ok=True)
    if not base.is_dir():
        raise BenchError(f"{base}: VOC root not found; set root to the folder holding VOCdevkit/, or download: true "
                         f"(fetches {URL}, MD5-checked)")
    voc = find_voc2012(base)
    train = first(_split(voc, train_split), train_subset, "train_subset")
    test = first(_split(voc, test_split), test_subset, "test_subset")
    info = TaskInfo("segmentation", 21, 3, (crop_size, crop_size), ignore_index=255, class_names=CLASSES,
                    background_index=0)
    return file_segmentation_task(train, test, info, crop=(crop_size, crop_size), scale=scale, resize=None,
                                  eval_size=(eval_size, eval_size), workers=workers,
                                  provenance={"root": str(voc), "train_split": train_split, "test_split": test_split})


def _check(root: str = "data", download: bool = False, **_) -> None:
    """``root`` must hold the VOC2012 folder unless ``download`` fetches it (the layout is checked cheaply)."""
    base = absolute(root)
    if download and not (base / "VOCdevkit").is_dir() and not _is_voc(base):
        return
    if not base.is_dir():
        raise BenchError(f"{base}: VOC root not found; set root to the folder holding VOCdevkit/, or download: true "
                         f"(fetches {URL}, MD5-checked)")
    find_voc2012(base)


voc2012.check = _check
voc2012.kind = "segmentation"
