"""Pipelines: albumentations for segmentation (image and mask stay aligned; masks use nearest
interpolation and pad with the ignore index), and a file-backed segmentation dataset.

Training: random scale, pad to the crop size, random crop, horizontal flip. Evaluation: optional
resize to a fixed size (a downscaled protocol, stated in the config), then pad with the ignore index
to a size divisible by 32 so batches stack; padded pixels are ignored by the metrics, so with no
resize the scores are those at the original resolution. Classification from files (images too big
to hold in memory) uses the ImageNet protocol: random resized crop + flip, resize + centre crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.errors import BenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_pipeline(crop: tuple[int, int], scale: tuple[float, float], ignore: int,
                   resize: tuple[int, int] | None = None) -> A.Compose:
    steps = [A.Resize(*resize, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)] if resize else []
    steps += [
        A.RandomScale(scale_limit=(scale[0] - 1, scale[1] - 1), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(*crop, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore),
        A.RandomCrop(*crop),
        A.HorizontalFlip(p=0.5),
    ]
    return A.Compose(steps)


def eval_pipeline(size: tuple[int, int], ignore: int, resize: tuple[int, int] | None = None) -> A.Compose:
    steps = [A.Resize(*resize, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)] if resize else []
    steps += [A.PadIfNeeded(*size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore),
              A.CenterCrop(*size)]
    return A.Compose(steps)


def read_mask(path: Path) -> np.ndarray:
    """Class indices from a palette or single-channel PNG (never converted to RGB)."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16"):
            raise BenchError(f"{path}: mask has mode {im.mode}; expected a palette or single-channel index PNG")
        return np.array(im, dtype=np.int64)


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


class SegmentationFiles(Dataset):
    """(image, mask) file pairs -> (normalised float CHW, int64 HW) through an albumentations pipeline."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], transform: A.Compose, num_classes: int, ignore: int,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.pairs, self.transform = list(pairs), transform
        self.num_classes, self.ignore = num_classes, ignore
        self.mean = np.array(mean, dtype=np.float32) * 255
        self.std = np.array(std, dtype=np.float32) * 255

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[i]
        image, mask = read_image(image_path), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise BenchError(f"{mask_path}: mask is {mask.shape} but its image is {image.shape[:2]}; fix the pair")
        return image, self.check(mask, mask_path)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(i)
        out = self.transform(image=image, mask=mask)
        return to_tensor(out["image"], self.mean, self.std), torch.from_numpy(out["mask"].astype(np.int64))

    def masks(self) -> torch.Tensor:
        """All masks (N, H, W) int64 as ``__getitem__`` gives them, without decoding an image.

        The transform must be deterministic (the evaluation pipeline): it runs on a 1-channel dummy image
        so geometry (resize, pad, crop) is exactly that of the real pairs.
        """
        out = []
        for image_path, mask_path in self.pairs:
            mask = self.check(read_mask(mask_path), mask_path)
            with Image.open(image_path) as im:
                if (im.height, im.width) != mask.shape:
                    raise BenchError(f"{mask_path}: mask is {mask.shape} but its image is {(im.height, im.width)}; "
                                     "fix the pair")
            dummy = np.zeros((*mask.shape, 1), dtype=np.uint8)
            out.append(torch.from_numpy(self.transform(image=dummy, mask=mask)["mask"].astype(np.int64)))
        return torch.stack(out) if out else torch.zeros(0, 0, 0, dtype=torch.int64)

    def check(self, mask: np.ndarray, mask_path: Path) -> np.ndarray:
        bad = (mask >= self.num_classes) & (mask != self.ignore)
        if bad.any():
            raise BenchError(f"{mask_path}: mask value {int(mask[bad][0])} is outside 0..{self.num_classes - 1} and "
                             f"is not the ignore index {self.ignore}; fix the mask or the task's num_classes")
        return mask


def to_tensor(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> normalised float CHW (``mean``/``std`` on the 0..255 scale)."""
    x = (image.astype(np.float32) - mean) / std
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def classification_train_pipeline(size: int, scale: tuple[float, float] = (0.08, 1.0)) -> A.Compose:
    """ImageNet-style training: random resized crop (area ``scale``, aspect 3/4..4/3) to ``size`` + flip."""
    return A.Compose([A.RandomResizedCrop((size, size), scale=scale, interpolation=cv2.INTER_LINEAR),
                      A.HorizontalFlip(p=0.5)])


def classification_eval_pipeline(size: int, crop_pct: float = 0.875) -> A.Compose:
    """ImageNet-style single-view test: shorter side to ``size / crop_pct``, centre crop ``size``."""
    return A.Compose([A.SmallestMaxSize(round(size / crop_pct), interpolation=cv2.INTER_AREA),
                      A.CenterCrop(size, size)])


class ClassificationFiles(Dataset):
    """(image file, label) pairs -> (normalised float CHW, int64) through an albumentations pipeline."""

    def __init__(self, files: Sequence[tuple[Path, int]], transform: A.Compose, mean, std):
        self.files, self.transform = list(files), transform
        self.mean = np.array(mean, dtype=np.float32) * 255
        self.std = np.array(std, dtype=np.float32) * 255

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.files[i]
        try:
            image = read_image(path)
        except OSError as exc:
            raise BenchError(f"{path}: cannot decode image ({exc}); remove or replace the file") from None
        return to_tensor(self.transform(image=image)["image"], self.mean, self.std), torch.tensor(label)


def pair_files(images: Path, masks: Path, stems: Sequence[str] | None, image_exts=(".jpg", ".jpeg", ".png"),
               mask_ext: str = ".png") -> list[tuple[Path, Path]]:
    """Match images to masks by file stem; a missing mask is a one-line error naming the image."""
    if stems is None:
        stems = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in image_exts)
    pairs = []
    for stem in stems:
        image = next((images / f"{stem}{e}" for e in image_exts if (images / f"{stem}{e}").is_file()), None)
        if image is None:
            raise BenchError(f"{images}/{stem}.*: image listed but missing; restore it or remove it from the list")
        mask = masks / f"{stem}{mask_ext}"
        if not mask.is_file():
            raise BenchError(f"{image}: has no mask {mask}; add the mask or remove the image")
        pairs.append((image, mask))
    return pairs
