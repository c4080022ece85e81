"""Bring-your-own-data tasks: ``image_folder`` (classification) and ``segmentation_folder`` (dense).

Both read a directory or a .tar/.tar.gz archive (relative paths resolve against the working
directory). ``image_folder`` uses the torchvision ImageFolder layout ``<root>/<split>/<class>/*`` with
classes in sorted order, decodes every image ONCE into memory as uint8 (resized to ``image_size``)
and caches the tensors, so small-image datasets such as CIFAR-as-JPEG train at full speed with
batched augmentation. ``segmentation_folder`` reads ``<root>/<split>/<images>/`` + ``<masks>/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import DatasetSplit, Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.tasks.common import cache_dir, data_root
from bench.tasks.transforms import SegmentationFiles, eval_pipeline, pair_files, train_pipeline

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _class_files(split_dir: Path, per_class: int | None) -> tuple[list[str], list[tuple[Path, int]]]:
    if not split_dir.is_dir():
        raise BenchError(f"{split_dir}: split folder not found; expected <root>/<split>/<class>/<image>")
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
    path = cache_dir() / "decoded" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    value = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(value, tmp)
    tmp.replace(path)
    return value


def image_folder(root: str, train_split: str = "train", test_split: str = "test", image_size: int | None = None,
                 train_per_class: int | None = None, test_per_class: int | None = None, pad: int = 4,
                 flip: bool = True) -> Task:
    """ImageFolder-layout classification (<root>/<split>/<class>/*.jpg) from a folder or tar(.gz), held in memory."""
    base = data_root(root, "image folder", "give the folder or .tar.gz holding <split>/<class>/<image> files")
    size = (image_size, image_size) if image_size else None
    src = Path(root).expanduser()
    stamp = f"{src.resolve()}:{src.stat().st_mtime_ns}:{size}"
    splits = {}
    classes: list[str] = []
    for split, per_class in ((train_split, train_per_class), (test_split, test_per_class)):
        split_dir = _split_dir(base, split)
        names, files = _class_files(split_dir, per_class)
        if classes and names != classes:
            raise BenchError(f"{split_dir}: classes differ from the {train_split} split's; both splits need the "
                             "same class folders")
        classes = names
        splits[split] = _cached(f"{stamp}:{split}:{per_class}", lambda f=files: _decode(f, size))
    x_tr, y_tr = splits[train_split]
    x_te, y_te = splits[test_split]
    mean = tuple((x_tr.float() / 255).mean((0, 2, 3)).tolist())
    std = tuple((x_tr.float() / 255).std((0, 2, 3)).tolist())
    info = TaskInfo("classification", len(classes), 3, tuple(x_tr.shape[-2:]), class_names=tuple(classes))
    return Task(info, TensorSplit(x_tr, y_tr, mean, std, pad=pad, flip=flip), TensorSplit(x_te, y_te, mean, std),
                provenance={"root": str(src), "train_images": len(x_tr), "test_images": len(x_te)})


def file_segmentation_task(train_pairs, test_pairs, info: TaskInfo, *, crop: tuple[int, int],
                           scale: tuple[float, float], resize: tuple[int, int] | None,
                           eval_size: tuple[int, int], workers: int, provenance: dict) -> Task:
    """A segmentation Task over (image, mask) files: albumentations for training, padded eval."""
    if not train_pairs or not test_pairs:
        raise BenchError(f"{provenance.get('root')}: a split is empty (train {len(train_pairs)}, test "
                         f"{len(test_pairs)} pairs); check the split names and lists")
    ignore = info.ignore_index if info.ignore_index is not None else 255
    evaluate = eval_pipeline(eval_size, ignore, resize)

    def files(pairs, transform):
        return SegmentationFiles(pairs, transform, info.num_classes, ignore)

    train = DatasetSplit(files(train_pairs, train_pipeline(crop, scale, ignore, resize)),
                         files(train_pairs, evaluate), workers=workers)
    test = DatasetSplit(files(test_pairs, evaluate), files(test_pairs, evaluate), workers=workers)
    return Task(info, train, test, provenance={**provenance, "train_images": len(train_pairs),
                                               "test_images": len(test_pairs)})


def round_up(size: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    return tuple(-(-s // multiple) * multiple for s in size)  # type: ignore[return-value]


def segmentation_folder(root: str, num_classes: int, ignore_index: int | None = 255,
                        class_names: list[str] | None = None, background_index: int | None = None,
                        train_split: str = "train", test_split: str = "val", images: str = "images",
                        masks: str = "masks", crop_size: int = 256, scale: tuple[float, float] = (0.5, 2.0),
                        resize: tuple[int, int] | None = None, eval_size: tuple[int, int] = (512, 512),
                        train_subset: int | None = None, test_subset: int | None = None, workers: int = 2) -> Task:
    """Your own dense data: <root>/<split>/{images,masks}/ with index-PNG masks, classes and ignore index configurable."""
    base = data_root(root, "segmentation folder", "give the folder holding <split>/images and <split>/masks")
    pairs = {}
    for split, subset in ((train_split, train_subset), (test_split, test_subset)):
        d = base / split
        if not (d / images).is_dir() or not (d / masks).is_dir():
            raise BenchError(f"{d}: expected sub-folders {images}/ and {masks}/; set images/masks to their names")
        pairs[split] = pair_files(d / images, d / masks, None)[:subset]
    info = TaskInfo("segmentation", num_classes, 3, (crop_size, crop_size), ignore_index=ignore_index,
                    class_names=tuple(class_names or [str(i) for i in range(num_classes)]),
                    background_index=background_index)
    return file_segmentation_task(pairs[train_split], pairs[test_split], info, crop=(crop_size, crop_size),
                                  scale=scale, resize=resize, eval_size=round_up(resize or eval_size),
                                  workers=workers, provenance={"root": str(root)})
