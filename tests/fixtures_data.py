"""Writers for small datasets in the exact official formats (used by the task tests)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

VOC_PALETTE = [0] * 768
for i in range(256):  # the VOC colour map (bit-interleaved), as shipped in SegmentationClass PNGs
    r = g = b = 0
    c = i
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    VOC_PALETTE[3 * i: 3 * i + 3] = [r, g, b]


def write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """cifar-10-batches-py with data_batch_1..5 and test_batch: dicts with bytes keys, data (N, 3072) uint8."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f, protocol=2)
    return folder


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> Path:
    """cifar-100-python/{train,test,meta}: bytes keys, data (N, 3072) uint8, fine_labels and coarse_labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        with open(folder / name, "wb") as f:
            pickle.dump({b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                         b"fine_labels": rng.integers(0, 100, n).tolist(),
                         b"coarse_labels": rng.integers(0, 20, n).tolist(),
                         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, f, protocol=2)
    return folder


def class_image(mask: np.ndarray) -> np.ndarray:
    """An RGB image whose red channel encodes the class (12 * class) so alignment can be checked."""
    img = np.zeros((*mask.shape, 3), dtype=np.uint8)
    img[..., 0] = np.where(mask == 255, 0, mask * 12).astype(np.uint8)
    img[..., 1] = 128
    return img


def palette_png(mask: np.ndarray, path: Path) -> None:
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(VOC_PALETTE)
    im.save(path)


def random_mask(rng, h: int, w: int, classes: list[int], border: int | None = 255) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    for c in classes:
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        mask[y: y + 8, x: x + 10] = c
        if border is not None:
            mask[max(0, y - 1): y + 9, max(0, x - 1)] = border  # VOC-style 255 outline pixels
    return mask


def write_voc(root: Path, n_train: int = 6, n_val: int = 4, size=(40, 48), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val)):
        stems = [f"2007_{split}{i:04d}" for i in range(n)]
        for stem in stems:
            mask = random_mask(rng, *size, classes=rng.choice(np.arange(1, 21), 2, replace=False).tolist())
            Image.fromarray(class_image(mask)).save(voc / "JPEGImages" / f"{stem}.jpg", quality=100, subsampling=0)
            palette_png(mask, voc / "SegmentationClass" / f"{stem}.png")
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return voc


def write_camvid(root: Path, n: int = 4, size=(36, 48), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / "camvid"
    for split in ("train", "val", "test"):
        (base / split / "images").mkdir(parents=True)
        (base / split / "labels").mkdir(parents=True)
        for i in range(n):
            mask = random_mask(rng, *size, classes=[3, 8], border=None)
            mask[:4] = 11  # void
            Image.fromarray(class_image(np.where(mask == 11, 255, mask))).save(base / split / "images" / f"f{i:03d}.png")
            Image.fromarray(mask, mode="L").save(base / split / "labels" / f"f{i:03d}.png")
    return base


def write_image_folder(root: Path, classes=("b_cls", "a_cls", "c_cls"), per_class: int = 3, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for k, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = np.full((size, size, 3), 40 * k + i, dtype=np.uint8) + rng.integers(0, 2, (size, size, 3),
                                                                                          dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.png")
    return root


def write_seg_folder(root: Path, splits=("train", "test"), size=(32, 32), n: int = 3,
                     big: tuple[int, int] | None = None) -> Path:
    """A segmentation folder (<split>/images, <split>/masks; 3 classes, random pixels); ``big``: the last
    test image at that size instead."""
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            h, w = big if (big and split == splits[-1] and i == n - 1) else size
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}.png")
            Image.fromarray(rng.integers(0, 3, (h, w), dtype=np.uint8), mode="L").save(root / split / "masks" / f"{i}.png")
    return root
