"""CamVid road scenes (SegNet release): ``<split>/images/*.jpg|png`` + ``<split>/labels/*.png``.

11 classes (indices 0–10), 11 = void (ignored). Splits train (367) / val (101) / test (233). ``root``
may be the folder or the .tar.gz (extracted once into ``$BENCH_DATA_CACHE`` or ``<temp>/bench-data``);
relative paths resolve against the working directory. ``resize`` (H, W) gives a downscaled protocol
for CPU runs (images area-resized, masks nearest; metrics at that resolution); without it, evaluation
is at the original 360x480 padded to 384x480 with void. Training: random scale + pad + ``crop_size``
crop + flip. Subsets take the first N files in sorted order. ImageNet mean/std.
"""

from __future__ import annotations

from bench.data import Task, TaskInfo
from bench.errors import BenchError
from bench.limits import Examples, Pixels, Scale, Workers
from bench.tasks.common import absolute, data_root, first, is_archive, only_subfolder
from bench.tasks.folders import file_segmentation_task, nonempty, round_up
from bench.tasks.transforms import pair_files

CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car", "pedestrian", "bicyclist")


def camvid(root: str = "data/camvid", train_split: str = "train", test_split: str = "test",
           resize: tuple[Pixels, Pixels] | None = None, crop_size: tuple[Pixels, Pixels] = (352, 480),
           scale: tuple[Scale, Scale] = (0.75, 1.5), train_subset: Examples | None = None,
           test_subset: Examples | None = None, workers: Workers = 2) -> Task:
    """CamVid (SegNet release): 11 road-scene classes, void = 11 ignored; folder or .tar.gz, optional downscaling."""
    base = only_subfolder(data_root(root, "CamVid data", "give the SegNet-release folder or camvid.tar.gz"), "camvid")
    pairs = {}
    for split, subset, key in ((train_split, train_subset, "train_subset"), (test_split, test_subset, "test_subset")):
        d = base / split
        if not (d / "images").is_dir() or not (d / "labels").is_dir():
            raise BenchError(f"{d}: expected {split}/images/ and {split}/labels/ (SegNet CamVid layout); check root")
        pairs[split] = nonempty(first(pair_files(d / "images", d / "labels", None), subset, key), d / "images",
                                "put the split's images there (labels/ holds masks of the same stem) or fix root")
    crop = tuple(min(c, r) for c, r in zip(crop_size, resize)) if resize else tuple(crop_size)
    info = TaskInfo("segmentation", 11, 3, crop, ignore_index=11, class_names=CLASSES)
    return file_segmentation_task(pairs[train_split], pairs[test_split], info, crop=crop, scale=scale, resize=resize,
                                  eval_size=round_up(resize or (360, 480)), workers=workers,
                                  provenance={"root": str(base), "resize": resize})


def _check(root: str = "data/camvid", **_) -> None:
    """``root`` must be a folder or a .tar.gz (not extracted here: that is the run's job)."""
    path = absolute(root)
    if not path.is_dir() and not is_archive(path):
        raise BenchError(f"{path}: CamVid data not found (relative paths resolve against the working directory); "
                         "give the SegNet-release folder or camvid.tar.gz")


camvid.check = _check
camvid.kind = "segmentation"
