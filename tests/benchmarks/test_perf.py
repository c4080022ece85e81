"""Speed targets of the harness, each a ratio measured side by side (see README 'Performance')."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.ablations.path_gradients import sampled_input_gradients
from bench.config import TrainConfig
from bench.data import TaskInfo, TensorSplit
from bench.evaluate import predict_stats
from bench.flow import Edit, edited, identity_flow
from bench.models.resnet_cifar import cifar_resnet
from bench.sweep import evaluate_shared
from bench.train import train
from tests.benchmarks.conftest import interleaved

CPU = torch.device("cpu")
INFO = TaskInfo("classification", 10)


def cifar_like(n: int, seed: int = 0) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    return TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                       torch.randint(0, 10, (n,), generator=g), (0.5,) * 3, (0.25,) * 3)


def test_lesion_sweep_shares_the_prefix(benchmark):
    """Target 1: full single-block sweep of ResNet-56, shared prefix vs each lesioned model from scratch: >= 1.8x."""
    torch.manual_seed(0)
    model = cifar_resnet(INFO, depth=56).eval()
    flow = identity_flow(model)
    split = cifar_like(256)
    sets = [{b.name: Edit(drop_branch=True)} for b in flow.blocks]

    def shared():
        return evaluate_shared(model, flow, sets, split, INFO, batch_size=256, device=CPU)

    def scratch():
        out = []
        for e in sets:
            with edited(model, e):
                out.append(predict_stats(model, split, INFO, batch_size=256, device=CPU))
        return out

    assert all((a.stats == b.stats).all() for a, b in zip(shared(), scratch()))  # identical metrics
    fast, slow = interleaved(shared, scratch, repeats=2)
    benchmark.extra_info.update(target="lesion sweep ResNet-56 (27 blocks, 256 images): shared/scratch speed-up",
                                ratio=round(slow / fast, 2), goal=1.8)
    benchmark.pedantic(shared, rounds=1, iterations=1)


def test_path_gradient_samples_are_batched(benchmark):
    """Target 2: path-gradient samples/s, per-example masks in one backward vs one backward per sample: >= 10x."""
    torch.manual_seed(0)
    model = cifar_resnet(INFO, depth=20).eval()
    flow = identity_flow(model)
    x, y = next(cifar_like(64).batches(64, train=False))
    masks = (torch.rand(len(flow.residual_blocks), 64) < 0.5).float()

    def batched():
        return sampled_input_gradients(model, flow, x, y, masks, None)

    def one_by_one(n=16):
        return [sampled_input_gradients(model, flow, x[i:i + 1], y[i:i + 1], masks[:, i:i + 1], None)
                for i in range(n)]

    fast, slow = interleaved(batched, one_by_one, repeats=2)
    ratio = (64 / fast) / (16 / slow)
    benchmark.extra_info.update(target="path-gradient samples/s, batched (64/backward) vs one per backward",
                                ratio=round(ratio, 2), goal=10.0)
    benchmark.pedantic(batched, rounds=1, iterations=1)


class PlainBasicBlock(nn.Module):
    """Reference block without bench.flow instrumentation (same layers as cifar_resnet's)."""

    def __init__(self, block):
        super().__init__()
        self.branch, self.shortcut, self.post = block.branch, block.shortcut, block.post

    def forward(self, x):
        return self.post(self.branch(x) + self.shortcut(x))


def test_idle_instrumentation_costs_nothing(benchmark):
    """Target 3: forward throughput with merge points idle vs the same net without them: >= 0.97x."""
    torch.manual_seed(0)
    model = cifar_resnet(INFO, depth=56).eval()
    reference = cifar_resnet(INFO, depth=56).eval()
    reference.load_state_dict(model.state_dict())
    reference.trunk = nn.Sequential(*(PlainBasicBlock(m) if hasattr(m, "merge") else m for m in reference.trunk))
    x = torch.randn(128, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))

        def run(m):
            return lambda: [m(x) for _ in range(3)]

        inst, ref = interleaved(run(model), run(reference), repeats=5)
    benchmark.extra_info.update(target="forward throughput, instrumented (idle) / uninstrumented ResNet-56",
                                ratio=round(ref / inst, 3), goal=0.97)
    benchmark.pedantic(run(model), rounds=1, iterations=1)


def bare_loop(model, split, steps, batch_size, lr=0.1):
    """The minimal hand-written loop the trainer is measured against."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    done = 0
    while done < steps:
        for x, y in split.batches(batch_size, train=True, epoch=done):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break


def test_trainer_runs_at_bare_loop_speed(benchmark):
    """Target 4: bench.train images/s vs a minimal loop (same model, data, batch): >= 0.9x; data path vs model."""
    from bench.data import Task

    split = cifar_like(1024)
    task = Task(INFO, split, split)
    steps, bs = 8, 128
    cfg = TrainConfig(epochs=1, batch_size=bs, max_steps_per_epoch=steps)

    def ours():
        torch.manual_seed(0)
        train(cifar_resnet(INFO, depth=20), task, cfg, seed=0, device=CPU)

    def bare():
        torch.manual_seed(0)
        bare_loop(cifar_resnet(INFO, depth=20), split, steps, bs)

    def data_only():
        for i, _ in enumerate(split.batches(bs, train=True)):
            if i + 1 == steps:
                break

    t_ours, t_bare = interleaved(ours, bare, repeats=2)
    t_data, _ = interleaved(data_only, lambda: None, repeats=3)
    benchmark.extra_info.update(target="training images/s, bench trainer / bare loop (ResNet-20, batch 128)",
                                ratio=round(t_bare / t_ours, 3), goal=0.9,
                                data_vs_model=round((t_ours / steps) / (t_data / steps), 1))
    benchmark.pedantic(ours, rounds=1, iterations=1)
