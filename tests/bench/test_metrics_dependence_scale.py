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
    """D as the runner computes it: on the scale, chance is 1/C of the labels; on a task metric, the majority
    predictor's score (what bench 0.1 did)."""
    if metric == "scale":
        return float(dependence(ablated.score, full.score, full.chance_score))
    return float(dependence(ablated.primary, full.primary, chance.primary))


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_q_corruption_gives_d_equal_q_and_constant_predictors_d_one(kind):
    g = torch.Generator().manual_seed(0)
    info = TaskInfo(kind, C, image_size=(24, 24))
    target, train = labels(kind, g), labels(kind, g)
    good = torch.where(torch.rand(target.shape, generator=g) < 0.8, target, torch.randint(0, C, target.shape, generator=g))
    full, chance = outcome(good, target, info), chance_outcome(train, target, info)
    assert chance.score == full.chance_score == pytest.approx(1 / C)  # the majority predictor: exactly 1/C
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


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_a_class_absent_from_the_test_labels(kind):
    """Chance is 1/C over the classes PRESENT (4 of 5 here), even when the training majority is the absent
    class; input-independent predictors over the present classes are D = 1, q-corruption over them D = q."""
    g = torch.Generator().manual_seed(1)
    info = TaskInfo(kind, C, image_size=(24, 24))
    target = labels(kind, g)
    target = torch.where(target == 0, 1, target)  # class 0 (the training majority) never in the test labels
    train = labels(kind, g)
    assert int(torch.bincount(train.flatten()).argmax()) == 0
    good = torch.where(torch.rand(target.shape, generator=g) < 0.8, target, 1 + torch.randint(0, C - 1, target.shape, generator=g))
    full, majority = outcome(good, target, info), chance_outcome(train, target, info)
    assert full.chance_score == pytest.approx(1 / (C - 1)) and majority.score == 0.0  # the majority is absent
    for constant in range(1, C):
        assert d_on("scale", outcome(torch.full_like(target, constant), target, info), full, majority) == pytest.approx(1.0)
    for q in (0.2, 0.6):
        hit = torch.rand(target.shape, generator=g) < q
        noisy = torch.where(hit, 1 + torch.randint(0, C - 1, target.shape, generator=g), good)
        assert d_on("scale", outcome(noisy, target, info), full, majority) == pytest.approx(q, abs=0.03)
    absent = outcome(torch.zeros_like(target), target, info)  # always the absent class: below chance
    assert d_on("scale", absent, full, majority) > 1.2
