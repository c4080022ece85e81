"""Bring-your-own-data tasks: ``image_folder`` (classification) and ``segmentation_folder`` (dense).

Both read a directory or a .tar/.tar.gz archive (relative paths resolve against the working
directory). ``image_folder`` uses the torchvision ImageFolder layout ``<root>/<split>/<class>/*`` with
classes in sorted order; small images are decoded ONCE into memory as uint8 and the tensors cached,
so small-image datasets such as CIFAR-as-JPEG train at full speed with batched augmentation (larger
ones stream from disk). ``segmentation_folder`` reads ``<root>/<split>/<images>/`` + ``<masks>/``
index PNGs, with the number of classes, ignore index, class names and folder names configurable.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from bench.data import DatasetSplit, Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.limits import Classes, ClassIndex, Examples, Pixels, Scale, Workers
from bench.tasks.common import absolute, cache_dir, data_root, first
from bench.tasks.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassificationFiles,
    SegmentationFiles,
    classification_eval_pipeline,
    classification_train_pipeline,
    eval_pipeline,
    pair_files,
    train_pipeline,
)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def folders_in(path: Path) -> str:
    """``'train, val'``: the sub-folders that do exist, for an error about one that does not."""
    names = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    return ", ".join(names) if names else "no sub-folders"


def _class_files(split_dir: Path, per_class: int | None) -> tuple[list[str], list[tuple[Path, int]]]:
    if not split_dir.is_dir():
        raise BenchError(f"{split_dir}: split folder not found; {split_dir.parent} holds: {folders_in(split_dir.parent)}; "
                         "set train_split/test_split to one of them (layout <root>/<split>/<class>/<image>)")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise BenchError(f"{split_dir}: no class sub-folders; expected <root>/<split>/<class>/<image>")
    files = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        files += [(p, label) for p in images[:per_class]]
    if not files:
        raise BenchError(f"{split_dir}: the split holds no images; check the path or the per-class limit")
    return classes, files


def _split_dir(base: Path, split: str) -> Path:
    """``base/split``, or ``base/<only folder>/split`` for archives that wrap everything in one folder."""
    subfolders = [p for p in base.iterdir() if p.is_dir()]
    if not (base / split).is_dir() and len(subfolders) == 1 and (subfolders[0] / split).is_dir():
        return subfolders[0] / split
    return base / split


def _decode(files: list[tuple[Path, int]], size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = []
    for path, _ in files:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                arrays.append(np.asarray(im))
        except OSError as exc:
            raise BenchError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise BenchError(f"{files[0][0].parent.parent}: images differ in size {sorted(shapes)[:3]}; set image_size")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor([label for _, label in files], dtype=torch.int64)


def _cached(key: str, build):
    """``build()`` memoised on disk under the cache dir (atomic write: a concurrent run never reads half a file)."""
    path = cache_dir() / "decoded" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    value = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value


def _files_key(files: list[tuple[Path, int]]) -> str:
    """Cache key of a decoded split: every selected file's path, label, size and mtime."""
    h = hashlib.sha1()
    for path, label in files:
        st = path.stat()
        h.update(f"{path}:{label}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


SMALL = 64  # images up to this size (px, longer side) are held in memory as uint8


def image_folder(root: str, train_split: str = "train", test_split: str = "test", image_size: Pixels | None = None,
                 in_memory: bool | None = None, train_per_class: Examples | None = None,
                 test_per_class: Examples | None = None, pad: Annotated[int, Field(ge=0, le=1024)] = 4, flip: bool = True,
                 workers: Workers = 2) -> Task:
    """ImageFolder-layout classification (<root>/<split>/<class>/*) from a folder or tar(.gz); small images in RAM.

    Classes are the sorted sub-folder names; ``*_per_class`` keeps the first N sorted files of each class
    (deterministic, stratified). Small images (<= 64 px, or ``image_size`` <= 64; ``in_memory`` overrides)
    are decoded once (resized to ``image_size`` if given) into uint8 tensors, cached on disk keyed by the
    files' paths, sizes and mtimes; training: ``pad``-pixel reflect-pad crop + flip, batched; normalised
    with the training split's per-channel mean/std. Larger images are read by DataLoader workers with the
    ImageNet protocol (random resized crop + flip; resize + centre crop ``image_size``, default 224) and
    ImageNet mean/std. A relative ``root`` resolves against the working directory.
    """
    base = data_root(root, "image folder", "give the folder or .tar.gz holding <split>/<class>/<image> files")
    selected: dict[str, list[tuple[Path, int]]] = {}
    classes: list[str] = []
    for split, per_class in ((train_split, train_per_class), (test_split, test_per_class)):
        split_dir = _split_dir(base, split)
        names, selected[split] = _class_files(split_dir, per_class)
        if classes and names != classes:
            raise BenchError(f"{split_dir}: classes differ from the {train_split} split's; both splits need the "
                             "same class folders")
        classes = names
    if in_memory is None:
        if image_size is not None:
            in_memory = image_size <= SMALL
        else:
            with Image.open(selected[train_split][0][0]) as im:
                in_memory = max(im.size) <= SMALL
    provenance = {"root": str(absolute(root)), "in_memory": in_memory, "train_images": len(selected[train_split]),
                  "test_images": len(selected[test_split])}
    if not in_memory:
        with Image.open(selected[train_split][0][0]) as im:
            size = image_size or min(224, min(im.size))  # never upscale small images to the ImageNet 224
        info = TaskInfo("classification", len(classes), 3, (size, size), class_names=tuple(classes))

        def split_of(files, train: bool) -> DatasetSplit:
            view = ClassificationFiles(files, classification_eval_pipeline(size), IMAGENET_MEAN, IMAGENET_STD)
            aug = ClassificationFiles(files, classification_train_pipeline(size), IMAGENET_MEAN, IMAGENET_STD)
            labels = torch.tensor([label for _, label in files], dtype=torch.int64)
            return DatasetSplit(aug if train else view, view, workers=workers, label_fn=lambda: labels)

        return Task(info, split_of(selected[train_split], True), split_of(selected[test_split], False),
                    provenance=provenance)
    size = (image_size, image_size) if image_size else None
    x_tr, y_tr = _cached(f"{_files_key(selected[train_split])}:{size}", lambda: _decode(selected[train_split], size))
    x_te, y_te = _cached(f"{_files_key(selected[test_split])}:{size}", lambda: _decode(selected[test_split], size))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise BenchError(f"{_split_dir(base, test_split)}: images are {tuple(x_te.shape[-2:])} but training images are "
                         f"{tuple(x_tr.shape[-2:])}; set image_size")
    mean = tuple((x_tr.float() / 255).mean((0, 2, 3)).tolist())
    std = tuple((x_tr.float() / 255).std((0, 2, 3)).tolist())
    info = TaskInfo("classification", len(classes), 3, tuple(x_tr.shape[-2:]), class_names=tuple(classes))
    return Task(info, TensorSplit(x_tr, y_tr, mean, std, pad=pad, flip=flip), TensorSplit(x_te, y_te, mean, std),
                provenance=provenance)


def file_segmentation_task(train_pairs, test_pairs, info: TaskInfo, *, crop: tuple[int, int],
                           scale: tuple[float, float], resize: tuple[int, int] | None,
                           eval_size: tuple[int, int], workers: int, provenance: dict) -> Task:
    """A segmentation Task over (image, mask) files: albumentations for training, padded eval.

    ``targets()`` reads only the masks (no image decoding, no augmentation) in evaluation geometry, once
    per split: chance levels and ``classify_from_masks`` labels are cheap and consistent with evaluation.
    Evaluation pads every test image to ``eval_size`` and never crops one: a test image larger than
    ``eval_size`` (with no ``resize``) is a one-line error naming the file and the size to use.
    """
    if resize is None:
        check_eval_size(test_pairs, eval_size)
    ignore = info.ignore_index if info.ignore_index is not None else 255
    evaluate = eval_pipeline(eval_size, ignore, resize)

    def split(pairs, train: bool) -> DatasetSplit:
        view = SegmentationFiles(pairs, evaluate, info.num_classes, ignore)
        aug = SegmentationFiles(pairs, train_pipeline(crop, scale, ignore, resize), info.num_classes, ignore)
        return DatasetSplit(aug if train else view, view, workers=workers, label_fn=functools.cache(view.masks))

    return Task(info, split(train_pairs, True), split(test_pairs, False),
                provenance={**provenance, "train_images": len(train_pairs), "test_images": len(test_pairs)})


def nonempty(pairs: list, where: Path, fix: str) -> list:
    """``pairs`` unless empty: an empty split is a one-line error naming its folder or list."""
    if not pairs:
        raise BenchError(f"{where}: the split is empty (no image/mask pairs); {fix}")
    return pairs


def round_up(size: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    return tuple(-(-s // multiple) * multiple for s in size)  # type: ignore[return-value]


def image_sizes(pairs: list[tuple[Path, Path]]) -> list[tuple[int, int]]:
    """(H, W) of each pair's image, read from the file headers (nothing is decoded)."""
    sizes = []
    for image, _ in pairs:
        with Image.open(image) as im:
            sizes.append((im.height, im.width))
    return sizes


def check_eval_size(test_pairs: list[tuple[Path, Path]], eval_size: tuple[int, int]) -> None:
    """Evaluation pads to ``eval_size``; an image larger than it would be centre-cropped and scored in part."""
    for (image, _), (h, w) in zip(test_pairs, image_sizes(test_pairs)):
        if h > eval_size[0] or w > eval_size[1]:
            need = round_up((max(h, eval_size[0]), max(w, eval_size[1])))
            raise BenchError(f"{image}: test image is {h}x{w}, larger than eval_size {list(eval_size)}: evaluation "
                             f"would crop it and score only part of it; set eval_size: {list(need)} (or leave it "
                             "unset to size it from the data, or set resize to evaluate downscaled)")


FAR_LARGER = 2.0  # warn when a given crop_size is more than this many times the images' typical side


def data_sizes(train_pairs, test_pairs, resize: tuple[int, int] | None) -> tuple[int, tuple[int, int]]:
    """Defaults from the data: the crop (training images' median shorter side, a multiple of 8, at most
    256) and the evaluation size (the largest test image, rounded up to 32, so nothing is cropped)."""
    if resize is not None:
        return min(256, max(8, min(resize) // 8 * 8)), round_up(resize)
    train = image_sizes(train_pairs)
    test = image_sizes(test_pairs)
    short = sorted(min(h, w) for h, w in train)[len(train) // 2]
    return min(256, max(8, short // 8 * 8)), round_up((max(h for h, _ in test), max(w for _, w in test)))


def segmentation_folder(root: str, num_classes: Classes, ignore_index: ClassIndex | None = 255,
                        class_names: list[str] | None = None, background_index: ClassIndex | None = None,
                        train_split: str = "train", test_split: str = "val", images: str = "images",
                        masks: str = "masks", crop_size: Pixels | None = None, scale: tuple[Scale, Scale] = (0.5, 2.0),
                        resize: tuple[Pixels, Pixels] | None = None, eval_size: tuple[Pixels, Pixels] | None = None,
                        train_subset: Examples | None = None, test_subset: Examples | None = None,
                        workers: Workers = 2) -> Task:
    """Your own dense data: <root>/<split>/{images,masks}/ with index-PNG masks, classes and ignore index configurable.

    Sizes fit the data unless given: ``crop_size`` (training crop, after ``resize`` and random ``scale``)
    defaults to the training images' median shorter side (a multiple of 8, at most 256), and a given
    ``crop_size`` more than twice that is warned about (most of each crop would be upscaled or padded
    pixels: slow, little signal). ``eval_size`` (H, W) defaults to the largest test image rounded up to
    32: every test image is padded with the ignore index to it, never cropped, so scores are at the
    original resolution; a given ``eval_size`` smaller than a test image is an error naming the file
    and the size to use. ``resize`` scales every image (train and test) to a fixed (H, W) first.
    """
    base = data_root(root, "segmentation folder", "give the folder holding <split>/images and <split>/masks")
    pairs = {}
    for split, subset, key in ((train_split, train_subset, "train_subset"), (test_split, test_subset, "test_subset")):
        d = base / split
        if not d.is_dir():
            which = "train_split" if split == train_split else "test_split"
            raise BenchError(f"{d}: split folder not found; {base} holds: {folders_in(base)}; set {which} to one of "
                             "them")
        if not (d / images).is_dir() or not (d / masks).is_dir():
            raise BenchError(f"{d}: expected sub-folders {images}/ and {masks}/; set images/masks to their names "
                             f"(it holds: {folders_in(d)})")
        pairs[split] = nonempty(first(pair_files(d / images, d / masks, None), subset, key), d / images,
                                "add images (with masks of the same stem in the masks folder) or fix root")
    fit_crop, fit_eval = data_sizes(pairs[train_split], pairs[test_split], resize)
    if crop_size is not None and crop_size > FAR_LARGER * fit_crop:
        warnings.warn(f"segmentation_folder {root}: crop_size {crop_size} is {crop_size / fit_crop:.1f}x the training "
                      f"images' typical side ({fit_crop} px): most of each crop is upscaled or padding, which is slow "
                      f"and teaches little; set crop_size: {fit_crop} or leave it unset", UserWarning, stacklevel=2)
    crop = crop_size or fit_crop
    info = TaskInfo("segmentation", num_classes, 3, (crop, crop), ignore_index=ignore_index,
                    class_names=tuple(class_names or [str(i) for i in range(num_classes)]),
                    background_index=background_index)
    return file_segmentation_task(pairs[train_split], pairs[test_split], info, crop=(crop, crop),
                                  scale=scale, resize=resize, eval_size=round_up(eval_size or fit_eval),
                                  workers=workers, provenance={"root": str(root), "crop_size": crop,
                                                               "eval_size": list(round_up(eval_size or fit_eval))})


def check_root(root: str | None = None, **_: object) -> None:
    """Cheap check for ``bench validate`` (nothing decoded or extracted): the data root exists."""
    if root is not None and not absolute(root).exists():
        raise BenchError(f"root {absolute(root)}: not found (relative paths resolve against the working directory); "
                         "fix root or create the folder")


image_folder.check = check_root  # type: ignore[attr-defined]
segmentation_folder.check = check_root  # type: ignore[attr-defined]


image_folder.kind = "classification"  # read by validate (bench.config.task_kind) for the verdict's sides
segmentation_folder.kind = "segmentation"
