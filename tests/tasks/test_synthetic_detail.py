"""synthetic_detail: the evidence axis is real, and dense and global labels describe the same object.

The probe is a tiny CNN (two 3×3 convs, global mean+max pooling, linear head) trained with Adam: it is
translation invariant, so it can read a shape wherever the object sits. Thresholds are set from these
measurements (n_train 1200, n_test 600, 4 classes, chance 0.25, binomial SE at chance 0.018; generator
and probe seeds 0..4, 300 steps of 128, 4×4 area downsample to 8×8):

* fine evidence, downsampled:   0.243, 0.238, 0.248, 0.257, 0.225  -> must stay below 0.25 + 0.07
* coarse evidence, downsampled: 0.563, 0.623, 0.625, 0.662, 0.678  -> must stay above 0.45
* fine evidence, full resolution, the same probe for only 40 steps of 32: 0.998 (seed 0) -> above 0.9

How they were checked to fail (tests/tasks/test_synthetic_detail.py's probe, seed 0, patched generator):
* fine texture of period 8 (coarser than the downsample: ``(yy // 4) % 2`` etc.): downsampled fine probe
  1.000 -> the fine test fails;
* object radius 0.12–0.2 instead of 0.3–0.42: downsampled coarse probe 0.272 -> the coarse test fails;
* masks labelled with the uninformative attribute (``o + 1`` for ``c + 1``): both consistency tests fail.
A texture with a nonzero mean per tile but random object colour does NOT fail the fine test (0.242,
seed 0): the random colour hides a mean offset, so the test guards the period, not the tile mean.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import TASKS
from bench.tasks.synthetic_detail import synthetic_detail, texture_pattern

CHANCE = 0.25


def probe_accuracy(train, test, factor: int, *, steps: int, batch: int, seed: int = 0) -> float:
    """Test accuracy of a tiny translation-invariant CNN trained on ``factor``× area-downsampled images."""
    torch.manual_seed(seed)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255
        return F.avg_pool2d(x, factor) if factor > 1 else x

    a, b = prep(train.images), prep(test.images)
    mean, std = a.mean((0, 2, 3), keepdim=True), a.std((0, 2, 3), keepdim=True)
    a, b = (a - mean) / std, (b - mean) / std
    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    head = nn.Linear(32, int(train.labels.max()) + 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = conv(x)
        return head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))

    opt = torch.optim.Adam([*conv.parameters(), *head.parameters()], 1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(a), (batch,), generator=g)
        loss = F.cross_entropy(forward(a[i]), train.labels[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (forward(b).argmax(1) == test.labels).float().mean().item()


@pytest.fixture(scope="module")
def fine():
    return synthetic_detail("image", "fine", n_train=1200, n_test=600, seed=0)


@pytest.fixture(scope="module")
def coarse():
    return synthetic_detail("image", "coarse", n_train=1200, n_test=600, seed=0)


def test_fine_evidence_vanishes_after_a_4x_downsample(fine):
    acc = probe_accuracy(fine.train, fine.test, 4, steps=300, batch=128)
    assert acc < CHANCE + 0.07, f"fine classes still told apart at 1/4 resolution: {acc:.3f}"


def test_fine_evidence_is_there_at_full_resolution(fine):
    # the control: the same probe reads the texture when it is not downsampled (so chance above is the downsample)
    acc = probe_accuracy(fine.train, fine.test, 1, steps=40, batch=32)
    assert acc > 0.9, f"fine classes not learnable at full resolution: {acc:.3f}"


def test_coarse_evidence_survives_a_4x_downsample(coarse):
    acc = probe_accuracy(coarse.train, coarse.test, 4, steps=300, batch=128)
    assert acc > 0.45, f"coarse classes lost at 1/4 resolution: {acc:.3f}"


def test_textures_have_zero_mean_on_every_2x2_tile():
    # why a 4× area downsample erases them: every 4×4 block is four 2×2 tiles of mean 0
    for kind in ("flat", "checker", "hstripes", "vstripes"):
        p = texture_pattern(kind, 8)
        assert torch.equal(F.avg_pool2d(p[None, None], 2), torch.zeros(1, 1, 4, 4)), kind
    assert not torch.equal(texture_pattern("checker", 8), texture_pattern("hstripes", 8))


@pytest.mark.parametrize("evidence", ["coarse", "fine"])
def test_dense_and_global_labels_describe_the_same_object(evidence):
    dense = synthetic_detail("pixel", evidence, n_train=64, n_test=32, seed=5)
    glob = synthetic_detail("image", evidence, n_train=64, n_test=32, seed=5)
    for d, g in ((dense.train, glob.train), (dense.test, glob.test)):
        assert torch.equal(d.images, g.images)  # same seed -> same images for both targets
        for mask, label in zip(d.labels, g.labels):
            present = mask.unique()
            # exactly one object: background and one class, and that class is the global label
            assert present.tolist() == [0, int(label) + 1], (present.tolist(), int(label))
            assert (mask > 0).sum() >= 40  # the object is visible, not a few stray pixels (radius >= 0.3 * 32)
    assert glob.info.num_classes + 1 == dense.info.num_classes
    assert dense.info.class_names[1:] == glob.info.class_names


def test_evidence_changes_which_attribute_the_class_fixes():
    # same generator stream, so the same seed draws the same (label, other) pairs for both evidence scales:
    # coarse and fine images differ only in which attribute follows the class
    c = synthetic_detail("image", "coarse", n_train=32, n_test=8, seed=2)
    f = synthetic_detail("image", "fine", n_train=32, n_test=8, seed=2)
    assert torch.equal(c.train.labels, f.train.labels)
    assert not torch.equal(c.train.images, f.train.images)


def test_registered_as_a_builtin_task():
    assert TASKS.get("synthetic_detail") is synthetic_detail
