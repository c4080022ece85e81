"""Pascal VOC 2012 segmentation in the VOCdevkit layout, 21 classes, 255 = ignore.

``root`` is the folder holding ``VOCdevkit/`` (``VOCdevkit`` or ``VOC2012`` itself are accepted too);
a relative ``root`` resolves against the working directory. ``JPEGImages/``, ``SegmentationClass/``
palette PNGs read as class indices (never converted to RGB), ``ImageSets/Segmentation/{train,val}.txt``.
``train_split: train_aug`` uses the SBD-augmented ``SegmentationClassAug/`` and ``train_aug.txt``
(10,582 images) when present. Training: random scale ``scale`` + pad (mask pad 255) + random
``crop_size`` crop + horizontal flip. Evaluation pads each image to ``eval_size`` (default 512, divisible
by 32) with the ignore index, so batches stack and scores are at the original resolution (images are
at most 500x500). ``train_subset``/``test_subset`` take the first N listed images. ImageNet mean/std.
``workers`` above the cores here is capped to them (one note on stderr; the count used is in provenance).

Getting the data: ``download: true`` fetches ``VOCtrainval_11-May-2012.tar`` (about 2 GB; MD5-checked,
then extracted beside itself: about 4 GB of disk with the tar kept). Without network,
place that tar as-is in ``root`` (it is checked and extracted on the next run), or unpack it so that
``root/VOCdevkit/VOC2012`` holds ``JPEGImages/``, ``SegmentationClass/`` and ``ImageSets/Segmentation/``.
SBD (``train_split: train_aug``) is never downloaded: add ``SegmentationClassAug/`` and
``ImageSets/Segmentation/train_aug.txt`` to that folder yourself. ``bench validate`` says which of these
is present and what a run would download (``status``), without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

from bench.data import Task, TaskInfo
from bench.errors import BenchError
from bench.limits import Examples, Pixels, Scale, Workers
from bench.tasks.common import absolute, capped_workers, first, release
from bench.tasks.folders import file_segmentation_task
from bench.tasks.transforms import pair_files

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor")
URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
TAR = URL.rsplit("/", 1)[1]
TAR_GB = 2.0  # the published tar, about 2 GB (an uncompressed tar: about as much again once extracted)
LAYOUT = "JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/"
SBD = "SegmentationClassAug/ and ImageSets/Segmentation/train_aug.txt (SBD, not downloaded by bench)"


def by_hand(base: Path, train_split: str = "train") -> str:
    """What to place where when the download cannot run (no network), and that the run resumes."""
    sbd = f"; for train_split: train_aug also add {SBD} there" if train_split == "train_aug" else ""
    return (f"without network, place {TAR} as-is in {base} (MD5-checked and extracted on the next run), or unpack "
            f"it there so that {base / 'VOCdevkit' / 'VOC2012'} holds {LAYOUT}{sbd}; then run the same command "
            "again: it resumes (finished cells are kept)")


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
        release(URL, MD5, base, download_ok=True, by_hand=by_hand(base, train_split))
    if not base.is_dir():
        raise BenchError(f"{base}: VOC root not found; set root to the folder holding VOCdevkit/, or download: true "
                         f"(fetches {URL}, MD5-checked)")
    voc = find_voc2012(base)
    train = first(_split(voc, train_split), train_subset, "train_subset")
    test = first(_split(voc, test_split), test_subset, "test_subset")
    info = TaskInfo("segmentation", 21, 3, (crop_size, crop_size), ignore_index=255, class_names=CLASSES,
                    background_index=0)
    used = capped_workers(workers, "voc2012")
    return file_segmentation_task(train, test, info, crop=(crop_size, crop_size), scale=scale, resize=None,
                                  eval_size=(eval_size, eval_size), workers=used,
                                  provenance={"root": str(voc), "train_split": train_split, "test_split": test_split,
                                              "workers": used})


def _check(root: str = "data", download: bool = False, **_) -> None:
    """``root`` must hold the VOC2012 folder unless ``download`` fetches it (the layout is checked cheaply)."""
    base = absolute(root)
    if download and not (base / "VOCdevkit").is_dir() and not _is_voc(base):
        return
    if not base.is_dir():
        raise BenchError(f"{base}: VOC root not found; set root to the folder holding VOCdevkit/, or download: true "
                         f"(fetches {URL}, MD5-checked)")
    find_voc2012(base)


def _status(root: str = "data", download: bool = False, train_split: str = "train", test_split: str = "val",
            **_) -> list[str]:
    """What ``validate`` says about the data: present (where), or missing and what a run downloads (how big)."""
    base = absolute(root)
    voc = next((c for c in (base / "VOCdevkit" / "VOC2012", base / "VOC2012", base) if _is_voc(c)), None)
    if voc is not None:
        lines = [f"VOC 2012 present at {voc}"]
        for split in dict.fromkeys((train_split, test_split)):
            listing = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
            masks = voc / ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
            if listing.is_file() and masks.is_dir():
                lines.append(f"split {split}: {len(listing.read_text().split())} image(s) listed")
            else:
                what = SBD if split == "train_aug" else f"{listing.name} or {masks.name}/"
                lines.append(f"split {split}: MISSING {what} in {voc}; a run stops there")
        return lines
    archive = base / TAR
    if archive.is_file():
        return [f"VOC 2012 not extracted yet: {archive} is there; " + (
            f"a run checks its MD5 and extracts it into {base} (about 2 GB more disk)" if download else
            "set download: true to have a run check and extract it, or unpack it there yourself")]
    lines = [f"VOC 2012 missing: no VOCdevkit/VOC2012 (with {LAYOUT}) in {base}"]
    if download:
        lines.append(f"a run downloads {URL} (about {TAR_GB:.0f} GB, MD5-checked) into {base} and extracts it "
                     "there (about 4 GB of disk in all, the tar kept)")
        lines.append(by_hand(base, train_split).replace("without network, ", "or, without network: "))
    if train_split == "train_aug" and not download:  # with download, the by-hand line above already says it
        lines.append(f"train_split train_aug needs {SBD}")
    return lines


voc2012.check = _check
voc2012.status = _status
voc2012.kind = "segmentation"
