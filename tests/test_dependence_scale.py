"""One dependence scale for both task kinds (bench.metrics.SCALE, balanced accuracy).

Property: an input-independent predictor scores D = 1 on a dense task and on a global task alike, and
a model whose predictions are replaced by uninformed labels on a fraction q of the examples (global) or
pixels (dense) scores D ≈ q on both. Checked on synthetic predictions with imbalanced classes, through
the runner's own path (example_stats -> Outcome -> chance_outcome -> dependence). The same data on the
task metrics (top-1, mIoU) miss the property by far — the check below shows the test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.ablations.base import dependence
from bench.data import TaskInfo
from bench.metrics import Outcome, chance_outcome, example_stats

C = 5
FREQ = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])  # imbalanced, as real labels are


def labels(kind: str, g: torch.Generator) -> torch.Tensor:
    shape = (20000,) if kind == "classification" else (60, 24, 24)
    return torch.multinomial(FREQ, int(np.prod(shape)), replacement=True, generator=g).reshape(shape)


def corrupt(pred: torch.Tensor, q: float, g: torch.Generator) -> torch.Tensor:
    """Replace a random fraction q of the predictions by uniform labels drawn without looking at the input."""
    hit = torch.rand(pred.shape, generator=g) < q
    return torch.where(hit, torch.randint(0, C, pred.shape, generator=g), pred)


def outcome(pred: torch.Tensor, target: torch.Tensor, info: TaskInfo) -> Outcome:
    return Outcome(example_stats(pred, target, info).numpy(), info)


def d_on(metric: str, ablated: Outcome, full: Outcome, chance: Outcome) -> float:
    get = (lambda o: o.score) if metric == "scale" else (lambda o: o.primary)
    return float(dependence(get(ablated), get(full), get(chance)))


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_q_corruption_gives_d_equal_q_and_constant_predictors_d_one(kind):
    g = torch.Generator().manual_seed(0)
    info = TaskInfo(kind, C, image_size=(24, 24))
    target, train = labels(kind, g), labels(kind, g)
    good = torch.where(torch.rand(target.shape, generator=g) < 0.8, target, torch.randint(0, C, target.shape, generator=g))
    full, chance = outcome(good, target, info), chance_outcome(train, target, info)
    assert chance.score == pytest.approx(1 / C)  # the majority predictor: exactly 1/C on this scale
    for q in (0.1, 0.3, 0.5, 0.8):
        d = d_on("scale", outcome(corrupt(good, q, g), target, info), full, chance)
        assert d == pytest.approx(q, abs=0.02), (kind, q, d)
    for constant in range(C):  # any input-independent constant predictor: D = 1 exactly
        d = d_on("scale", outcome(torch.full_like(target, constant), target, info), full, chance)
        assert d == pytest.approx(1.0, abs=1e-12)
    uniform = torch.randint(0, C, target.shape, generator=g)  # a random input-independent one: D = 1 in expectation
    assert d_on("scale", outcome(uniform, target, info), full, chance) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_the_task_metrics_miss_the_property(kind):
    """The negative control: on top-1 / mIoU the same corruption does not give D ≈ q (that scale is what the
    verdict issue found incomparable), so the test above would fail on it."""
    g = torch.Generator().manual_seed(0)
    info = TaskInfo(kind, C, image_size=(24, 24))
    target, train = labels(kind, g), labels(kind, g)
    good = torch.where(torch.rand(target.shape, generator=g) < 0.8, target, torch.randint(0, C, target.shape, generator=g))
    full, chance = outcome(good, target, info), chance_outcome(train, target, info)
    off = [abs(d_on("primary", outcome(corrupt(good, q, g), target, info), full, chance) - q) for q in (0.3, 0.5, 0.8)]
    assert max(off) > 0.1, off
