"""The task contract: what a task plugin gives the harness.

A task factory returns a ``Task``: its ``TaskInfo`` (kind, classes, ignore index) and two ``Split``s.
A ``Split`` yields normalised float batches; the two built-in kinds are ``TensorSplit`` (small images
kept in memory as uint8, augmented in batches with no per-sample Python) and ``DatasetSplit`` (files
decoded by DataLoader workers, e.g. albumentations pipelines for segmentation).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

Kind = Literal["classification", "segmentation"]
Batch = tuple[torch.Tensor, torch.Tensor]
# page-locked host batches, so the trainer's non_blocking copies overlap compute: on while a cell runs on CUDA
PIN_MEMORY: ContextVar[bool] = ContextVar("bench_pin_memory", default=False)


@contextlib.contextmanager
def pinned_for(device: torch.device) -> Iterator[None]:
    """File-backed batches are page-locked while a cell computes on ``device`` if it is a CUDA device
    (never on a CPU run, even where CUDA is present: pinning would start a CUDA context)."""
    token = PIN_MEMORY.set(device.type == "cuda")
    try:
        yield
    finally:
        PIN_MEMORY.reset(token)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``n`` torch intra-op threads for the block; the process's count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class TaskInfo:
    kind: Kind
    num_classes: int
    in_channels: int = 3
    image_size: tuple[int, int] = (32, 32)  # training input size (H, W)
    ignore_index: int | None = None  # segmentation: label excluded from loss and metrics
    class_names: tuple[str, ...] = ()
    # the class that is no object: `classify_from_masks` may skip it; conditioning also checks the others alone
    background_index: int | None = None


class Split(Protocol):
    """An evaluation or training split: sized, with targets for chance levels, yields (x, y) batches."""

    def __len__(self) -> int: ...

    def targets(self) -> torch.Tensor:
        """All labels (N,) or masks (N, H, W) as int64, for chance levels and class counts."""
        ...

    def batches(
        self, batch_size: int, *, train: bool, epoch: int = 0, seed: int = 0, rank: int = 0, world: int = 1,
        order: torch.Tensor | None = None,
    ) -> Iterator[Batch]:
        """``order`` (evaluation only): visit the examples in this order instead of 0..N-1."""
        ...


@dataclass
class Task:
    info: TaskInfo
    train: Split
    test: Split
    description: str = ""
    provenance: dict = field(default_factory=dict)  # data root, files, checksums: recorded in results


def cpu_cores() -> int:
    """The cores this process may use (its CPU affinity where the platform has one, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_CAPPED: set[tuple[str, int, int]] = set()


def worker_share(processes: int = 1) -> int:
    """The DataLoader workers one of ``processes`` cell processes sharing this machine may start: its share of
    the cores, at least 1 (the share of torch threads a process pool gives each cell, ``ProcessExecutor``)."""
    return max(1, cpu_cores() // max(1, processes))


def cap_workers(task: Task, label: str, note: bool = True, processes: int = 1, limit: int | None = None) -> int | None:
    """Every file-backed split of ``task`` (a ``workers`` attribute: ``DatasetSplit``) reads with at most its
    process's share of the cores here (``worker_share``: all of them, or cores // ``processes`` where a pool of
    cell processes shares the machine; ``limit``: a count already decided, a pool worker's from the driver's
    provenance): more DataLoader processes only contend, and torch warns about them once per loader. A cap is
    said in one note on stderr naming the task (once per task, count and share in a process; ``note``: False
    where another process says it). Returns the count its DataLoaders use (also ``task.provenance["workers"]``,
    and results.json's ``provenance.data_workers``), or None for a task held in memory."""
    splits = [s for s in (task.train, task.test) if isinstance(getattr(s, "workers", None), int)]
    if not splits:
        return None
    cores = cpu_cores()
    share = limit if limit is not None else worker_share(processes)
    asked = max(s.workers for s in splits)  # type: ignore[attr-defined]
    if asked > share and note and (label, asked, share) not in _CAPPED:
        _CAPPED.add((label, asked, share))
        where = (f"{cores} CPU core(s) here" if processes <= 1 else
                 f"{share} per cell process ({cores} CPU core(s) here, {processes} processes)")
        print(f"note: task {label}: workers {asked} > {where}; using {share}", file=sys.stderr)
    for s in splits:
        s.workers = min(s.workers, share)  # type: ignore[attr-defined]
    used = max(s.workers for s in splits)  # type: ignore[attr-defined]
    task.provenance["workers"] = used
    return used


def rank_batches(order: torch.Tensor, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[torch.Tensor]:
    """Index batches for one process. With ``world`` processes, global batch g is
    ``order[g*B*world : (g+1)*B*world]`` and rank r takes its r-th slice of B, so the union of the ranks'
    batches is exactly the single-process batch of size B*world. Incomplete global batches are dropped
    when world > 1, so every rank takes the same number of steps (DDP would otherwise hang)."""
    step = batch_size * world
    stop = len(order) if world == 1 else len(order) - len(order) % step
    for start in range(0, stop, step):
        yield order[start + rank * batch_size : start + (rank + 1) * batch_size]


def _normalise(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float().div_(255) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


@dataclass
class TensorSplit:
    """Images (N, C, H, W) uint8 and targets (N,) or (N, H, W) int64, held in memory.

    Training batches get a batched random crop from a ``pad``-pixel reflection-padded copy and a
    horizontal flip (masks follow their images), as in the He et al. CIFAR recipe.
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, "images must be uint8 NCHW"
        assert len(self.images) == len(self.labels), "images and labels differ in length"
        self._mean = torch.tensor(self.mean, dtype=torch.float32)
        self._std = torch.tensor(self.std, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def targets(self) -> torch.Tensor:
        return self.labels

    def batches(self, batch_size, *, train, epoch=0, seed=0, rank=0, world=1, order=None):
        n = len(self)
        if train:
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(n, generator=g)
        else:
            g, order = None, torch.arange(n) if order is None else order
        for idx in rank_batches(order, batch_size, rank, world):
            x, y = self.images[idx], self.labels[idx]
            if train:
                x, y = self._augment(x, y, g)
            yield _normalise(x, self._mean, self._std), y

    def _augment(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> Batch:
        n, _, h, w = x.shape
        dense = y.ndim == 3
        if self.pad:
            p = self.pad
            x = torch.nn.functional.pad(x.float(), (p, p, p, p), mode="reflect").to(torch.uint8)
            if dense:
                y = torch.nn.functional.pad(y[:, None].float(), (p, p, p, p), mode="reflect")[:, 0].long()
            dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
            rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (n,1,h,1)
            cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (n,1,1,w)
            bidx = torch.arange(n)[:, None, None, None]
            x = x[bidx, torch.arange(x.shape[1])[None, :, None, None], rows, cols]
            if dense:
                y = y[bidx[:, 0], rows[:, 0], cols[:, 0]]
        if self.flip:
            f = torch.rand(n, generator=g) < 0.5
            x = torch.where(f[:, None, None, None], x.flip(-1), x)
            if dense:
                y = torch.where(f[:, None, None], y.flip(-1), y)
        return x, y


@dataclass
class DatasetSplit:
    """A map-style Dataset returning (float CHW normalised tensor, int64 target), read by DataLoader workers.

    ``train_dataset`` (augmenting) and ``eval_dataset`` (deterministic) view the same files.
    """

    train_dataset: Dataset
    eval_dataset: Dataset
    workers: int = 2
    label_fn: object = None  # callable returning all targets; defaults to iterating eval_dataset

    def __len__(self) -> int:
        return len(self.eval_dataset)  # type: ignore[arg-type]

    def targets(self) -> torch.Tensor:
        if self.label_fn is not None:
            return self.label_fn()  # type: ignore[operator]
        return torch.stack([torch.as_tensor(self.eval_dataset[i][1]) for i in range(len(self))])

    def batches(self, batch_size, *, train, epoch=0, seed=0, rank=0, world=1, order=None):
        ds = self.train_dataset if train else self.eval_dataset
        n = len(ds)  # type: ignore[arg-type]
        if train:
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            order = torch.randperm(n, generator=g)
        elif order is None:
            order = torch.arange(n)
        indices = torch.cat(list(rank_batches(order, batch_size, rank, world)) or [order[:0]]).tolist()
        loader_seed = seed * 7919 + epoch
        if self.workers == 0:
            seed_transforms(ds, loader_seed)  # workers > 0 reseed their copies in _seed_worker
        loader = DataLoader(
            torch.utils.data.Subset(ds, indices),
            batch_size=batch_size,
            num_workers=self.workers,
            pin_memory=PIN_MEMORY.get(),
            persistent_workers=False,
            worker_init_fn=_seed_worker,
            generator=torch.Generator().manual_seed(loader_seed),
        )
        yield from loader


def _seed_worker(worker_id: int) -> None:
    import random

    import numpy as np

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        seed_transforms(info.dataset, s)


def seed_transforms(ds: object, seed: int) -> None:
    """Seed the albumentations pipeline of ``ds`` (through Subset wrappers).

    albumentations >= 1.4.20 draws from its own generator, not the global NumPy/Python ones, so
    without this the segmentation augmentation would differ from run to run.
    """
    while ds is not None:
        transform = getattr(ds, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed % 2**32)
        ds = getattr(ds, "dataset", None)
