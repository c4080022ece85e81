"""The CUDA path, checked on a CPU: what a GPU run does differently is decided by the same code a CPU
run goes through. File-backed batches are page-locked exactly while a cell computes on a CUDA device
(so the trainer's ``non_blocking`` copy overlaps compute; never for a CPU study on a GPU host, where
pinning would start a CUDA context); autocast is fp16 on CUDA only, bf16 on CUDA and CPU alike (emulated,
slow, on a CPU without AMX or AVX-512-BF16; tests/bench/test_precision.py). The published GPU configs
otherwise run on a CPU as given (``channels_last`` and ``amp: bf16`` included):
tests/tasks/test_formats.py::test_published_configs_run_on_fixtures."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

import bench.cell
import bench.data
from bench.cell import CellJob, compute_cell
from bench.evaluate import autocast
from bench.plan import Plan
from bench.tasks.folders import segmentation_folder
from tests.fixtures_data import write_seg_folder


def _folder(root):
    return segmentation_folder(root=str(write_seg_folder(root, size=(16, 16), n=2)), num_classes=3,
                               test_split="test", crop_size=16, eval_size=(16, 16), workers=0)


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_file_batches_are_pinned_exactly_on_a_cuda_device(tmp_path, monkeypatch, device):
    task = _folder(tmp_path)
    seen = []

    class Recorder(torch.utils.data.DataLoader):
        def __init__(self, *args, pin_memory=False, **kwargs):
            seen.append(pin_memory)
            super().__init__(*args, pin_memory=False, **kwargs)  # no GPU here to pin for

    monkeypatch.setattr(bench.data, "DataLoader", Recorder)
    with bench.data.pinned_for(torch.device(device)):
        for split, train in ((task.train, True), (task.test, False)):
            x, y = next(iter(split.batches(2, train=train)))
            assert x.shape[:2] == (2, 3) and y.shape[0] == 2
    next(iter(task.test.batches(2, train=False)))  # outside a cell: never pinned
    assert seen == [device == "cuda"] * 2 + [False]


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_every_executor_computes_a_cell_pinned_for_its_study_device(tmp_path, monkeypatch, device):
    seen = []
    config = tmp_path / "c.yaml"
    config.write_text("tasks: {t: {name: synthetic_shapes, n_train: 8, n_test: 4, image_size: 16}}\n"
                      "architectures: {a: {name: vgg, width: 4}}\n")
    plan = Plan.build(config)

    def cell(job, task, dev, progress):  # what compute_cell runs inside the device's context
        seen.append((bench.data.PIN_MEMORY.get(), dev.type))
        return {}, {}

    monkeypatch.setattr(bench.cell, "resolve_device", lambda name: torch.device(device))
    monkeypatch.setattr(bench.cell, "train_and_ablate", cell)
    monkeypatch.chdir(os.getcwd())  # a worker's compute_cell moves into job.cwd: come back after the test
    job = CellJob(plan, str(tmp_path / "run"), plan.units[0], None, {}, str(tmp_path), "another process")
    (tmp_path / "run" / "cells").mkdir(parents=True)
    out = compute_cell(job)  # as a worker computes it (another process id than the job's driver)
    assert out.error is None and seen == [(device == "cuda", device)]
    assert bench.data.PIN_MEMORY.get() is False  # reset after the cell


def test_autocast_is_fp16_on_cuda_only_and_bf16_on_both():
    with warnings.catch_warnings():  # constructing a CUDA autocast here warns that CUDA is absent
        warnings.simplefilter("ignore")
        bf16, fp16 = autocast(torch.device("cuda"), "bf16"), autocast(torch.device("cuda"), "fp16")
    assert isinstance(bf16, torch.autocast) and bf16.fast_dtype == torch.bfloat16
    assert isinstance(fp16, torch.autocast) and fp16.fast_dtype == torch.float16
    cpu_bf16 = autocast(torch.device("cpu"), "bf16")
    assert isinstance(cpu_bf16, torch.autocast) and cpu_bf16.device == "cpu" and cpu_bf16.fast_dtype == torch.bfloat16
    assert not isinstance(autocast(torch.device("cpu"), "fp16"), torch.autocast)
    assert not isinstance(autocast(torch.device("cuda"), "off"), torch.autocast)


@pytest.mark.parametrize("arch", ["cifar_resnet", "unet"])
def test_channels_last_trains_the_same_network_in_nhwc(arch):
    """``train.channels_last`` (the quickstart's and the GPU configs') changes the memory layout only. Kernels
    differ by CPU vendor (oneDNN picks others on an Intel Xeon with AMX: weights there differ by up to 5.5e-4
    after one epoch), so nothing is compared with a tolerance measured on one machine: NCHW vs NHWC from one
    seed must be far closer than two seeds of NCHW are to each other — in weights (under a tenth of the
    seed-to-seed distance) and in test predictions (agreeing at least as often). A layout change that altered
    the input (a wrong permute) trains another network and fails both."""
    from bench.config import TrainConfig
    from bench.models.resnet_cifar import cifar_resnet
    from bench.models.unet import unet
    from bench.tasks.synthetic import synthetic_shapes
    from bench.train import train

    factory, target = {"cifar_resnet": (cifar_resnet, "image"), "unet": (unet, "pixel")}[arch]
    task = synthetic_shapes(target=target, n_train=64, n_test=32, image_size=16, num_classes=3, seed=1)
    cpu, runs = torch.device("cpu"), {}
    for seed, nhwc in ((0, False), (0, True), (1, False)):
        torch.manual_seed(seed)
        model = factory(task.info, depth=2 if arch == "unet" else 8, width=4)
        train(model, task, TrainConfig(epochs=1, batch_size=16, optimizer="adamw", lr=1e-2, warmup_epochs=0,
                                       channels_last=nhwc), seed=seed, device=cpu)
        runs[seed, nhwc] = model.eval()
    convs = [m.weight for m in runs[0, True].modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)

    def distance(a, b) -> float:
        return float(sum((x.float() - y.float()).square().sum() for x, y in
                         zip(a.state_dict().values(), b.state_dict().values(), strict=True)).sqrt())

    def predictions(model) -> torch.Tensor:  # NCHW batches, as every ablation feeds them
        with torch.no_grad():
            return torch.cat([model(x).argmax(1).flatten() for x, _ in task.test.batches(32, train=False)])

    layout, seeds = distance(runs[0, False], runs[0, True]), distance(runs[0, False], runs[1, False])
    assert layout < 0.1 * seeds, (layout, seeds)
    pred = {k: predictions(m) for k, m in runs.items()}
    agree_layout = (pred[0, False] == pred[0, True]).float().mean().item()
    agree_seeds = (pred[0, False] == pred[1, False]).float().mean().item()
    assert agree_layout >= min(agree_seeds, 0.99), (agree_layout, agree_seeds)
