"""The CUDA path, checked on a CPU: what a GPU run does differently is decided by the same code a CPU
run goes through. File-backed batches are page-locked when CUDA is present (so the trainer's
``non_blocking`` copy overlaps compute); the published GPU configs' settings (bf16 autocast,
channels_last) run on a CPU as given (tests/test_tasks_formats.py::test_published_configs_run_on_fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import bench.data
from bench.tasks.folders import segmentation_folder


def _folder(root):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(2):
            mask = rng.integers(0, 3, (16, 16), dtype=np.uint8)
            Image.fromarray(np.repeat(mask[..., None] * 40, 3, 2)).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{i}.png")
    return segmentation_folder(root=str(root), num_classes=3, test_split="test", crop_size=16, eval_size=(16, 16),
                               workers=0)


@pytest.mark.parametrize("cuda", [True, False])
def test_file_batches_are_pinned_exactly_when_cuda_is_present(tmp_path, monkeypatch, cuda):
    task = _folder(tmp_path)
    seen = []

    class Recorder(torch.utils.data.DataLoader):
        def __init__(self, *args, pin_memory=False, **kwargs):
            seen.append(pin_memory)
            super().__init__(*args, pin_memory=False, **kwargs)  # no GPU here to pin for

    monkeypatch.setattr(bench.data, "DataLoader", Recorder)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    for split, train in ((task.train, True), (task.test, False)):
        x, y = next(iter(split.batches(2, train=train)))
        assert x.shape[:2] == (2, 3) and y.shape[0] == 2
    assert seen == [cuda, cuda]
