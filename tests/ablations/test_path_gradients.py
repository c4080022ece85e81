"""path_gradients: per-example gated backward passes are single paths of the unraveled network.

The exact path counts (n = 54) and batched == one-backward-per-sample on a trained ResNet are in
tests/ablations/test_trained_networks.py; here: the 2^n path gradients sum to the full gradient, segmentation with
ignored pixels, the k-subset sampler, the interpolated total gradient and the window rule.
No network here is trained (random weights, seeded BatchNorm statistics): another CPU or thread count
changes their numbers by float32 rounding only, far inside the tolerances asserted (docs/reproducibility.md).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from bench.ablations.base import AblationContext
from bench.ablations.path_gradients import (
    PathGradients,
    central_window,
    input_gradients,
    path_length_distribution,
    sample_masks,
    sampled_input_gradients,
    total_gradient,
)
from bench.evaluate import predict_stats
from bench.flow import identity_flow
from bench.metrics import bootstrap_weights, chance_outcome
from bench.models.resnet_cifar import cifar_resnet
from bench.tasks.synthetic import synthetic_shapes

CPU = torch.device("cpu")


def random_bn(model):
    """Eval-mode model with non-trivial BatchNorm statistics (an untrained net would hide bugs)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def cls_task():
    return synthetic_shapes(target="image", n_train=64, n_test=32, image_size=16, num_classes=3, seed=1)


@pytest.fixture(scope="module")
def model(cls_task):
    torch.manual_seed(0)
    return random_bn(cifar_resnet(cls_task.info, depth=14, width=4))


def test_the_path_gradients_sum_to_the_full_gradient(model, cls_task):
    """Unraveled view: the Jacobian of n blocks (branch + shortcut) expands into 2^n path products,
    so the gradients of all 2^n single paths, computed per example in ONE backward, add up to the
    ordinary gradient."""
    flow = identity_flow(model)
    n = len(flow.residual_blocks)
    assert n == 6
    x, y = next(cls_task.train.batches(1, train=False))
    masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n))).T  # (n, 2^n): every path once
    paths = input_gradients(model, flow, x.repeat(2**n, 1, 1, 1), y.repeat(2**n), masks, None)

    captured = []
    first = model.get_submodule(flow.residual_blocks[0].name)
    handle = first.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    try:
        loss = torch.nn.functional.cross_entropy(model(x), y, reduction="sum")
        (full,) = torch.autograd.grad(loss, captured[0])
    finally:
        handle.remove()
    assert torch.allclose(paths.sum(0), full[0], rtol=1e-4, atol=1e-6)
    assert paths.flatten(1).norm(dim=1).min() < 0.5 * paths.flatten(1).norm(dim=1).max()  # paths differ
    assert all(m.edit is None for m in model.modules() if hasattr(m, "edit"))  # edits restored
    assert not first._forward_pre_hooks  # capture hook removed


def test_segmentation_batched_equals_per_example_with_ignored_pixels():
    task = synthetic_shapes(target="pixel", n_train=8, n_test=8, image_size=16, num_classes=3, seed=2)
    torch.manual_seed(0)
    model = random_bn(cifar_resnet(task.info, depth=8, width=4))
    flow = identity_flow(model)
    x, y = next(task.train.batches(6, train=False))
    y = y.clone()
    y[:, :4] = 255  # a band of ignored pixels
    n = len(flow.residual_blocks)
    masks = sample_masks(n, 2, 6, torch.Generator().manual_seed(0))
    batched = input_gradients(model, flow, x, y, masks, 255)
    single = torch.cat([input_gradients(model, flow, x[i:i + 1], y[i:i + 1], masks[:, i:i + 1], 255)
                        for i in range(6)])
    assert batched.shape[0] == 6 and torch.allclose(batched, single, rtol=1e-4, atol=1e-7)
    assert batched.abs().sum() > 0



def test_per_example_paths_estimate_what_one_path_per_batch_estimates(model, cls_task):
    """A direct implementation of Veit's measurement samples ONE path per backward pass over a batch;
    bench gives every example its own path, so one backward yields a batch of samples. Both estimate
    the same mean gradient norm at length k: E over examples and k-paths. Checked within 4 standard errors."""
    flow = identity_flow(model)
    n, k, b, paths = len(flow.residual_blocks), 3, 32, 48
    x, y = next(cls_task.train.batches(b, train=False))
    g = torch.Generator().manual_seed(0)
    batched = torch.cat([sampled_input_gradients(model, flow, x, y, sample_masks(n, k, b, g), None)
                         for _ in range(paths)])  # paths x b samples, each example on its own path
    per_batch = torch.stack([sampled_input_gradients(model, flow, x, y, sample_masks(n, k, 1, g).expand(n, b),
                                                     None).mean() for _ in range(paths)])  # one path each
    se = (batched.var() / len(batched) + per_batch.var() / len(per_batch)).sqrt()
    assert (batched.mean() - per_batch.mean()).abs() < 4 * se, (batched.mean(), per_batch.mean(), se)
    assert per_batch.std() > 0  # different paths do give different gradients

def test_sampled_paths_have_exactly_k_blocks_uniformly():
    masks = sample_masks(6, 2, 6000, torch.Generator().manual_seed(0))
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    assert (masks.sum(0) == 2).all()
    assert np.allclose(masks.mean(1).numpy(), 2 / 6, atol=0.03)  # every block equally likely
    subsets = {tuple(c.nonzero().flatten().tolist()) for c in masks.T}
    assert len(subsets) == math.comb(6, 2)
    assert (sample_masks(6, 0, 5, torch.Generator()).sum() == 0) and (sample_masks(6, 6, 5, torch.Generator()) == 1).all()


def test_strided_ks_interpolate_an_exponential_decay_exactly():
    """Magnitude r^k makes the total gradient Binomial(n, r/(1+r)): with r = 1/4 (a decay like Veit's)
    the 90% window is 6–16 of 54 blocks, next to the paper's 5–17."""
    n, r = 54, 0.25
    ks_all = list(range(n + 1))
    lengths, full = total_gradient(n, ks_all, np.array([r**k for k in ks_all]))
    ks = [*range(0, n + 1, 4), n]
    _, strided = total_gradient(n, ks, np.array([r**k for k in ks]))
    assert np.allclose(strided, full, rtol=1e-9) and full.sum() == pytest.approx(1)
    # decaying magnitudes pull the gradient to short paths; flat ones give the binomial window
    flat = total_gradient(n, ks_all, np.ones(n + 1))[1]
    assert central_window(flat, 0.98) == central_window(np.array(path_length_distribution(n)), 0.98) == (19, 35)
    lo, hi = central_window(full, 0.9)
    assert (lo, hi) == (6, 16) and (lengths * full).sum() == pytest.approx(n * r / (1 + r))
    # equal tails: at most 5% cut below and above, and neither tail could take one more length
    assert full[:lo].sum() <= 0.05 < full[:lo + 1].sum() and full[hi + 1:].sum() <= 0.05 < full[hi:].sum()


def test_sparse_ks_are_not_extrapolated():
    lengths, total = total_gradient(10, [2, 5], np.array([1.0, 0.1]))
    assert lengths.tolist() == [2, 3, 4, 5] and total.sum() == pytest.approx(1)


def context(model, task):
    base = predict_stats(model, task.test, task.info, batch_size=32, device=CPU)
    chance = chance_outcome(task.train.targets(), task.test.targets(), task.info)
    return AblationContext(model, identity_flow(model), task, CPU, 0, base, chance, bootstrap_weights(base.n, 20, 0))


def test_run_with_a_k_step(cls_task):
    torch.manual_seed(0)
    model = random_bn(cifar_resnet(cls_task.info, depth=20, width=4))  # n = 9
    abl = PathGradients(k_step=3, samples_per_k=12, batch_size=8)  # 12 samples: the loader wraps around
    out = abl.run(context(model, cls_task))
    assert [r["key"]["k"] for r in out.records] == [0, 3, 6, 9]
    assert all(r["samples"] == 12 and r["grad_norm_mean"] > 0 for r in out.records)
    assert [r["path_share"] for r in out.records] == [math.comb(9, k) / 512 for k in (0, 3, 6, 9)]
    s = out.summary
    assert 0 <= s["window_low"] <= s["window_high"] <= 9 and s["n_blocks"] == 9 and s["mean_path_length"] == 4.5
    again = abl.run(context(model, cls_task))
    assert again.records == out.records  # seeded


def test_ks_outside_the_architecture_are_a_validation_error(model):
    with pytest.raises(ValueError, match=r"ks \[7\] outside 0..6"):
        PathGradients(ks=[0, 7]).validate(identity_flow(model))
    PathGradients(ks=[0, 6]).validate(identity_flow(model))
