"""CIFAR-10 / CIFAR-100 from the official python-pickle release, held in memory as uint8.

``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch}`` or ``<root>/cifar-100-python/{train,
test}`` (fine labels). ``download: true`` fetches the official tarball into ``root`` and verifies its
published MD5 before extracting; a tarball already in ``root`` is verified and extracted without
``download``. A relative ``root`` resolves against the working directory. Subsets take the first N
examples of each split (deterministic, not stratified: the release's batches are shuffled, so the
first N are near-balanced). Training augmentation: 4-pixel pad + random 32x32 crop + horizontal flip,
batched on uint8 tensors (He et al. 2016); normalisation with the published per-channel mean/std.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from bench.data import Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.limits import Examples
from bench.tasks.common import absolute, first, release

SOURCES = {
    10: ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
         "c58f30108f718f92721af3b95e74349a", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels",
         "batches.meta", b"label_names"),
    100: ("cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
          "eb9058c3a382ffc7106e4002c42a8d85", ["train"], ["test"], b"fine_labels", "meta", b"fine_label_names"),
}
STATS = {10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
         100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise BenchError(f"{path}: not a readable CIFAR pickle ({exc}); download the release again") from None


def load_batches(folder: Path, names: list[str], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise BenchError(f"{path}: missing CIFAR batch; the release folder is incomplete: extract it again")
        d = _unpickle(path)
        if b"data" not in d or label_key not in d:
            raise BenchError(f"{path}: lacks b'data' or {label_key!r}; is this the python version of the release?")
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def _cifar(classes: int, root: str, download: bool, train_subset: int | None, test_subset: int | None) -> Task:
    folder_name, url, md5, train_names, test_names, label_key, meta_name, names_key = SOURCES[classes]
    base = absolute(root)
    folder = base / folder_name
    if not folder.is_dir() and not release(url, md5, base, download):
        raise BenchError(f"{folder}: CIFAR-{classes} not found; set download: true, or download {url} into {base} "
                         "(it is verified and extracted on the next run)")
    if not folder.is_dir():
        raise BenchError(f"{base / url.rsplit('/', 1)[1]}: the archive holds no {folder_name}/; download it again")
    x_tr, y_tr = load_batches(folder, train_names, label_key)
    x_te, y_te = load_batches(folder, test_names, label_key)
    meta = folder / meta_name
    names = tuple(n.decode() for n in _unpickle(meta)[names_key]) if meta.is_file() else ()
    mean, std = STATS[classes]
    info = TaskInfo("classification", classes, 3, (32, 32), class_names=names)
    x_tr, y_tr = first(x_tr, train_subset, "train_subset"), first(y_tr, train_subset, "train_subset")
    x_te, y_te = first(x_te, test_subset, "test_subset"), first(y_te, test_subset, "test_subset")
    return Task(info, TensorSplit(x_tr, y_tr, mean, std, pad=4), TensorSplit(x_te, y_te, mean, std),
                provenance={"root": str(folder), "train_images": len(x_tr), "test_images": len(x_te)})


def cifar10(root: str = "data", download: bool = False, train_subset: Examples | None = None,
            test_subset: Examples | None = None) -> Task:
    """CIFAR-10, official python-pickle release (optional download, MD5-verified); in memory, pad-crop-flip."""
    return _cifar(10, root, download, train_subset, test_subset)


def cifar100(root: str = "data", download: bool = False, train_subset: Examples | None = None,
             test_subset: Examples | None = None) -> Task:
    """CIFAR-100 (fine labels), official python-pickle release (optional download, MD5-verified); in memory."""
    return _cifar(100, root, download, train_subset, test_subset)


def _checker(classes: int):
    def check(root: str = "data", download: bool = False, **_) -> None:
        """The release folder or its tarball must be in ``root`` unless ``download`` fetches it."""
        folder_name, url = SOURCES[classes][:2]
        base = absolute(root)
        if not download and not (base / folder_name).is_dir() and not (base / url.rsplit("/", 1)[1]).is_file():
            raise BenchError(f"{base / folder_name}: CIFAR-{classes} not found; set download: true, or download {url} "
                             f"into {base}")

    return check


cifar10.check, cifar100.check = _checker(10), _checker(100)
cifar10.kind = cifar100.kind = "classification"
