"""Recognition dependence reads the same evidence loss the same on a dense and a global task (issue 25, item 1).

A toy with K = 3 object classes and a background. The global model labels images, the dense model pixels;
each loses the evidence for a fraction q of its object examples/pixels. The dense model can lose it in three
ways: it confuses the object classes, spreads its guesses over every class, or calls the pixels background.
Recognition (``recognition_balanced_accuracy``, argmax among the object classes on object pixels, chance 1/K)
reads D = q in every case on both kinds. The all-class scale does not: it depends on how the dense pixels were
lost (the reason the measure exists), and localisation (object vs background) separates "called background"
from the rest. The statistics come from ``bench.metrics.example_stats`` / ``logits_stats``, as in a run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.ablations.base import dependence
from bench.data import TaskInfo
from bench.metrics import Outcome, chance_outcome, example_stats, logits_stats

K, Q = 3, 0.4
SEG = TaskInfo("segmentation", K + 1, background_index=0)
CLS = TaskInfo("classification", K + 1, background_index=0)


def d(full: Outcome, ablated: Outcome, metric: str, chance: str) -> float:
    return float(dependence(ablated.value(metric), full.value(metric), full.value(chance)))


def global_case(rng: torch.Generator) -> tuple[Outcome, Outcome]:
    labels = torch.randint(1, K + 1, (6000,), generator=rng)
    lost = torch.rand(6000, generator=rng) < Q
    guess = torch.randint(1, K + 1, (6000,), generator=rng)
    ablated = torch.where(lost, guess, labels)
    return Outcome(example_stats(labels, labels, CLS, labels).numpy(), CLS), \
        Outcome(example_stats(ablated, labels, CLS, ablated).numpy(), CLS)


def dense_case(rng: torch.Generator, how: str) -> tuple[Outcome, Outcome]:
    n, size = 300, 12
    masks = torch.zeros(n, size, size, dtype=torch.long)
    masks[:, 3:9, 3:9] = torch.randint(1, K + 1, (n, 1, 1), generator=rng)  # one object per image
    lost = (torch.rand(masks.shape, generator=rng) < Q) & (masks > 0)
    object_guess = torch.randint(1, K + 1, masks.shape, generator=rng)  # no evidence: any object class
    if how == "confused":
        pred = torch.where(lost, object_guess, masks)
    elif how == "spread":
        pred = torch.where(lost, torch.randint(0, K + 1, masks.shape, generator=rng), masks)
    else:  # called background
        pred = torch.where(lost, torch.zeros_like(masks), masks)
    object_pred = torch.where(lost, object_guess, masks.clamp(min=1))
    return Outcome(example_stats(masks, masks, SEG, masks.clamp(min=1)).numpy(), SEG), \
        Outcome(example_stats(pred, masks, SEG, object_pred).numpy(), SEG)


@pytest.mark.parametrize("how", ["confused", "spread", "called background"])
def test_the_same_evidence_loss_reads_the_same_recognition_dependence_on_both_kinds(how):
    rng = torch.Generator().manual_seed(0)
    g_full, g_abl = global_case(rng)
    s_full, s_abl = dense_case(rng, how)
    scale = ("recognition_balanced_accuracy", "recognition_chance")
    assert d(g_full, g_abl, *scale) == pytest.approx(Q, abs=0.03)
    assert d(s_full, s_abl, *scale) == pytest.approx(Q, abs=0.03)


def test_the_all_class_scale_depends_on_how_the_dense_pixels_were_lost_and_localisation_names_it():
    rng = torch.Generator().manual_seed(1)
    all_class = {how: d(*dense_case(rng, how), "balanced_accuracy", "balanced_chance")
                 for how in ("confused", "spread", "called background")}
    print(f"all-class D of a q = {Q} evidence loss: {all_class}")
    assert max(all_class.values()) - min(all_class.values()) > 0.05  # the measure decided the reading
    loc = {how: d(*dense_case(rng, how), "localisation_balanced_accuracy", "localisation_chance")
           for how in ("confused", "called background")}
    assert loc["confused"] == pytest.approx(0.0, abs=1e-9) and loc["called background"] > 0.3


def test_logits_leave_the_background_out_of_the_object_prediction_and_chance_is_one_in_k():
    logits = torch.zeros(2, K + 1, 4, 4)
    logits[:, 0] = 5.0  # background wins the plain argmax everywhere
    logits[:, 2] = 1.0  # class 2 wins among the objects
    masks = torch.full((2, 4, 4), 2)
    out = Outcome(logits_stats(logits, masks, SEG).numpy(), SEG)
    assert out.value("balanced_accuracy") == 0.0 and out.value("recognition_balanced_accuracy") == 1.0
    assert out.value("localisation_balanced_accuracy") == 0.0  # every object pixel called background
    train = torch.zeros(3, 4, 4, dtype=torch.long)
    train[:, :2] = torch.tensor([1, 1, 3]).view(3, 1, 1)
    test = torch.randint(1, K + 1, (40, 4, 4), generator=torch.Generator().manual_seed(2))
    chance = chance_outcome(train, test, SEG)
    assert chance.value("recognition_chance") == pytest.approx(1 / K)
    assert chance.value("recognition_balanced_accuracy") == pytest.approx(1 / K)  # one class, always right on it


def test_without_a_background_recognition_is_balanced_accuracy_and_old_statistics_still_read():
    info = TaskInfo("classification", 3)
    labels = torch.tensor([0, 1, 2, 2])
    out = Outcome(example_stats(labels, labels, info).numpy(), info)
    assert out.value("recognition_balanced_accuracy") == out.value("balanced_accuracy") == 1.0
    old = Outcome(example_stats(labels.clamp(max=2), labels, CLS).numpy(), CLS)  # no object-class columns
    assert "recognition_balanced_accuracy" not in old.metrics() and old.value("balanced_accuracy") >= 0
    assert np.isfinite(old.value("object_balanced_accuracy"))
