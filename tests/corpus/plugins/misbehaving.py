"""Plugins that fail the way buggy user code does: sys.exit() in a factory, an exception in an ablation
(before the run: while validating; or mid-run, after some cells are finished), an error inside a
DataLoader worker (a damaged image found mid-run)."""

import sys
from typing import ClassVar

import torch
from torch.utils.data import Dataset

from bench.ablations.base import Ablation, AblationResult
from bench.data import DatasetSplit, Task, TaskInfo
from bench.registry import ABLATIONS, ARCHITECTURES, TASKS


@ARCHITECTURES.register("corpus_exit_net")
def corpus_exit_net(info, code: int = 3):
    """Calls sys.exit(code) instead of returning a model."""
    sys.exit(code)


@ABLATIONS.register("corpus_fussy")
class Fussy(Ablation):
    """Raises while bench asks whether it applies (found by validate)."""

    phase: ClassVar = "test"
    removes: ClassVar = "branch"

    def applicable(self, flow):
        raise RuntimeError("fussy cannot decide")

    def run(self, ctx):  # a test-time ablation must have one; never reached
        raise AssertionError("run after applicable raised")


@ABLATIONS.register("corpus_flaky")
class Flaky(Ablation):
    """Raises in run() on the second cell it sees: the first cell's result is finished and kept."""

    phase: ClassVar = "test"
    removes: ClassVar = "branch"
    seen: ClassVar[list] = []

    def run(self, ctx):
        Flaky.seen.append(ctx.seed)
        if len(Flaky.seen) > 1:
            raise ValueError("flaky broke on its second cell")
        return AblationResult(records=[], summary={"dependence": None})


@ABLATIONS.register("corpus_untyped_records")
class UntypedRecords(Ablation):
    """Returns a record that is not its declared Record type (no key, no metrics)."""

    phase: ClassVar = "test"
    removes: ClassVar = "branch"

    def run(self, ctx):
        return AblationResult(records=[{"block": "trunk.1", "dependence": 0.5}], summary={"dependence": 0.5})


@ABLATIONS.register("corpus_untyped_summary")
class UntypedSummary(Ablation):
    """Returns a summary whose dependence is not a number."""

    phase: ClassVar = "test"
    removes: ClassVar = "branch"

    def run(self, ctx):
        return AblationResult(records=[], summary={"dependence": "high"})


@ABLATIONS.register("corpus_quitter")
class Quitter(Ablation):
    """Calls sys.exit(0) in run()."""

    phase: ClassVar = "test"
    removes: ClassVar = "branch"

    def run(self, ctx):
        sys.exit(0)


class Images(Dataset):
    """16x16 images; reading any test image fails like a truncated file would (inside a worker)."""

    def __init__(self, n: int, broken: bool, seg: bool):
        self.n, self.broken, self.seg = n, broken, seg

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.broken:
            raise OSError(f"image file is truncated (item {i})")
        g = torch.Generator().manual_seed(i)
        y = torch.randint(0, 2, (16, 16), generator=g) if self.seg else torch.tensor(i % 2)
        return torch.randn(3, 16, 16, generator=g), y


@TASKS.register("corpus_damaged_test_images")
def corpus_damaged_test_images(n: int = 8, workers: int = 1):
    """Training images read fine; every test image fails to decode in a DataLoader worker."""
    info = TaskInfo("classification", 2, 3, (16, 16))

    def split(broken: bool) -> DatasetSplit:
        labels = torch.arange(n) % 2
        return DatasetSplit(Images(n, False, False), Images(n, broken, False), workers=workers,
                            label_fn=lambda: labels)

    return Task(info, split(False), split(True))


@TASKS.register("corpus_damaged_train_images")
def corpus_damaged_train_images(n: int = 8, workers: int = 1):
    """Every training image fails to decode in a DataLoader worker (found by the one-batch probe)."""
    info = TaskInfo("classification", 2, 3, (16, 16))
    labels = torch.arange(n) % 2
    bad = DatasetSplit(Images(n, True, False), Images(n, True, False), workers=workers, label_fn=lambda: labels)
    return Task(info, bad, bad)




@ABLATIONS.register("corpus_long_variant")
class LongVariant(Ablation):
    """Trains a variant whose name is too long to be part of a file name."""

    phase: ClassVar = "train"
    removes: ClassVar = "identity"

    def variants(self, flow):
        return {"v" * 60: {}}
