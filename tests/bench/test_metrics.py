"""Evaluation protocol: mIoU / accuracy agree with torchmetrics; boundary band; bootstrap; chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index, multiclass_recall

from bench.data import TaskInfo
from bench.metrics import Outcome, bootstrap_weights, boundary_band, chance_outcome, example_stats

SEG = TaskInfo("segmentation", 5, ignore_index=255)
CLS = TaskInfo("classification", 4)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_miou_matches_torchmetrics(seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 5, (6, 12, 12), generator=g)
    target[:, :2] = 255  # ignored border, as in VOC
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target.clamp(max=4),
                       torch.randint(0, 5, target.shape, generator=g))
    ours = Outcome(example_stats(pred, target, SEG).numpy(), SEG).metrics()
    # torchmetrics averages over classes present in target or prediction, like the VOC confusion-matrix mIoU
    present = torch.unique(torch.cat([target[target != 255], pred[target != 255]]))
    theirs = multiclass_jaccard_index(pred, target, 5, average="none", ignore_index=255)[present].mean()
    assert ours["miou"] == pytest.approx(float(theirs), abs=1e-6)
    acc = multiclass_accuracy(pred, target, 5, average="micro", ignore_index=255)
    assert ours["pixel_accuracy"] == pytest.approx(float(acc), abs=1e-6)
    # balanced accuracy = mean recall over the classes present in the labels (the dependence scale)
    labelled = torch.unique(target[target != 255])
    recall = multiclass_recall(pred, target, 5, average="none", ignore_index=255)[labelled].mean()
    assert ours["balanced_accuracy"] == pytest.approx(float(recall), abs=1e-6)


def test_classification_accuracy_and_bootstrap():
    pred, target = torch.tensor([0, 1, 2, 3, 0, 0]), torch.tensor([0, 1, 2, 0, 1, 0])
    out = Outcome(example_stats(pred, target, CLS).numpy(), CLS)
    assert out.primary == pytest.approx(4 / 6)
    w = bootstrap_weights(out.n, 500, seed=0)
    assert w.shape == (500, 6) and (w.sum(1) == 6).all()
    boot = out.bootstrap(w, "accuracy")
    assert boot.min() >= 0 and boot.max() <= 1 and abs(boot.mean() - 4 / 6) < 0.05
    assert out.bootstrap(np.ones((1, 6)), "accuracy")[0] == pytest.approx(out.primary)  # identity weights = point
    # the default replicate is the dependence scale: recall 2/3 (class 0), 1/2 (class 1), 1 (class 2); 3 absent
    assert out.score == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert out.bootstrap(np.ones((1, 6)))[0] == pytest.approx(out.score)


def test_boundary_band_marks_pixels_near_label_edges():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[:, :, 5:] = 1
    band = boundary_band(target, band=1)[0]
    assert band[:, 4:6].all() and not band[:, :4].any() and not band[:, 6:].any()
    band3 = boundary_band(target, band=3)[0]
    assert band3[:, 2:8].all() and not band3[:, :2].any()


def test_out_of_range_mask_is_reported():
    with pytest.raises(ValueError, match="mask value 7 is outside 0..4"):
        example_stats(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7), SEG)


def test_chance_is_the_majority_class():
    train = torch.tensor([1, 1, 1, 0, 2])
    test = torch.tensor([1, 0, 0, 1])
    assert chance_outcome(train, test, CLS).primary == pytest.approx(0.5)
    seg_train = torch.zeros(2, 4, 4, dtype=torch.long)
    seg_test = torch.zeros(1, 4, 4, dtype=torch.long)
    seg_test[0, 0] = 1
    c = chance_outcome(seg_train, seg_test, SEG).metrics()
    assert c["miou"] == pytest.approx((12 / 16) / 2)  # IoU(bg) = 12/16, IoU(1) = 0


def test_per_class_recall_is_what_balanced_accuracy_averages_and_null_for_absent_classes():
    info = TaskInfo("classification", 4)
    target = torch.tensor([0, 0, 1, 1, 1, 2])       # class 3 absent
    pred = torch.tensor([0, 1, 1, 1, 0, 3])
    m = Outcome(example_stats(pred, target, info).numpy(), info).metrics()
    assert m["per_class_recall"] == [0.5, pytest.approx(2 / 3, abs=1e-6), 0.0, None]
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3, abs=1e-6)
