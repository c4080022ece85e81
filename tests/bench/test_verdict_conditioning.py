"""Conditioning over the object classes: a dense model that finds objects without telling them apart.

On a dense task background is a class, so a texture-blind localiser (background right, every object pixel
one object class) clears the all-class margin over chance; over the object classes alone it scores 1/C_obj,
chance exactly. The verdict's conditioning check must call such a row ill-conditioned.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data import TaskInfo
from bench.metrics import Outcome, example_stats, margins, shared_weights
from bench.results import Cell, cell_id
from bench.verdict import Evidence, _conditioning

SEG = TaskInfo("segmentation", 4, background_index=0)  # background + 3 object classes
CLS = TaskInfo("classification", 3)
N, SIZE = 120, 8


def _masks(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(N, SIZE, SIZE, dtype=torch.int64)
    for i in range(N):
        y, x = torch.randint(0, SIZE - 3, (2,), generator=g).tolist()
        masks[i, y:y + 3, x:x + 3] = 1 + i % 3
    return masks


def _localiser(masks: torch.Tensor) -> torch.Tensor:
    return torch.where(masks > 0, 1, 0)  # where the object is, never which


def _reader(masks: torch.Tensor, seed: int, flip: float = 0.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    wrong = (torch.rand(masks.shape, generator=g) < flip) & (masks > 0)
    return torch.where(wrong, 1 + (masks % 3), masks)  # mostly the right object class


def _outcome(pred: torch.Tensor, target: torch.Tensor, info: TaskInfo) -> Outcome:
    return Outcome(example_stats(pred, target, info).numpy(), info)


def test_a_localiser_clears_the_all_class_margin_but_sits_at_chance_over_the_objects():
    masks = _masks(0)
    m = _outcome(_localiser(masks), masks, SEG).metrics()
    assert m["balanced_accuracy"] - m["balanced_chance"] > 0.1  # what the old check alone let through
    assert m["object_balanced_accuracy"] == pytest.approx(m["object_chance"]) == pytest.approx(1 / 3)
    read = _outcome(_reader(masks, 0), masks, SEG).metrics()
    assert read["object_balanced_accuracy"] - read["object_chance"] > 0.4  # 0.8 recall - 1/3


def test_margins_list_the_object_scale_only_for_tasks_with_a_background():
    masks = _masks(0)
    w = shared_weights(N, 200)
    seg = margins(_outcome(_reader(masks, 0), masks, SEG), w)
    labels = torch.arange(N) % 3
    cls = margins(_outcome(labels, labels, CLS), w)
    assert set(seg) == {"all classes", "object classes"} and set(cls) == {"all classes"}
    value, boot = seg["object classes"]
    assert boot.shape == (200,) and np.min(boot) <= value <= np.max(boot)


def _run(dense_pred) -> Evidence:
    """Five seeds' baselines of a dense and a global task, in memory (what the driver loads from a run)."""
    cells, arrays = [], {}
    for seed in range(5):
        masks = _masks(seed)
        labels = torch.arange(N) % 3
        for task, stats in (("seg", example_stats(dense_pred(masks, seed), masks, SEG)),
                            ("cls", example_stats(labels, labels, CLS))):
            cid = cell_id(task, "unet", "baseline", seed)
            arrays[cid] = {"stats": stats.numpy()}
            cells.append(Cell.model_construct(id=cid, task=task, architecture="unet", variant="baseline", seed=seed,
                                              status="ok"))
    return Evidence(cells=cells, comparisons=[], arrays=arrays, dependence_boots={}, infos={"seg": SEG, "cls": CLS})


@pytest.mark.parametrize("pred, ok", [(lambda m, s: _localiser(m), False), (_reader, True)])
def test_the_verdict_calls_a_localiser_ill_conditioned(pred, ok):
    c = _conditioning("seg", "cls", "unet", list(range(5)), _run(pred), 0.1, 0.05, 200)
    assert c.ok is ok
    assert min(c.dense_margin.per_seed.values()) > 0.1  # the all-class margin passes either way
    assert c.global_object_margin is None and c.dense_object_margin is not None
    if not ok:
        assert "object classes" in c.note and max(c.dense_object_margin.per_seed.values()) < 1e-9


def test_missing_baseline_statistics_fail_the_check_instead_of_dropping_the_margin():
    ev = _run(_reader)
    del ev.arrays[cell_id("cls", "unet", "baseline", 3)]  # one seed of the global task lost its stats
    c = _conditioning("seg", "cls", "unet", list(range(5)), ev, 0.1, 0.05, 200)
    assert not c.ok and "cls s3 all classes" in c.note and "unchecked" in c.note


def test_a_twin_that_labels_object_free_images_background_declares_it():
    from bench.registry import TASKS

    src = {"name": "synthetic_shapes", "target": "pixel", "n_train": 16, "n_test": 8, "image_size": 16}
    twin = TASKS.build({"name": "classify_from_masks", "source": src})
    dropped = TASKS.build({"name": "classify_from_masks", "source": src, "unlabelled": "drop"})
    assert twin.info.background_index == 0 and dropped.info.background_index is None
    labels = twin.test.targets()
    assert set(margins(_outcome(labels, labels, twin.info), shared_weights(len(labels), 50))) == \
        {"all classes", "object classes"}


def _dependence_run(ablated) -> Evidence:
    """Baselines that read the classes; a skip_removal variant per seed given by ``ablated``."""
    from bench.results import Comparison, Interval

    ev = _run(_reader)
    comparisons = []
    for seed in range(5):
        masks, labels = _masks(seed), torch.arange(N) % 3
        for task, pred, info, target in (("seg", ablated(masks), SEG, masks), ("cls", labels, CLS, labels)):
            cid = cell_id(task, "unet", "no_identity", seed)
            ev.arrays[cid] = {"stats": example_stats(pred, target, info).numpy()}
            comparisons.append(Comparison.model_construct(ablation="skip_removal", task=task, architecture="unet",
                                                          variant="no_identity", seed=seed, headline=True,
                                                          dependence=Interval(estimate=0.0, low=None, high=None)))
    return Evidence(cells=ev.cells, comparisons=comparisons, arrays=ev.arrays, dependence_boots={}, infos=ev.infos)


def test_the_sensitivity_measures_d_over_the_object_classes():
    # the ablated dense model still finds every object but calls them all one class: on all classes it keeps
    # the background, so D is well below 1; over the object classes it is at chance, D = 1
    from bench.verdict import _dependence_on

    d = _dependence_on("seg", "unet", "skip_removal", _dependence_run(_localiser), 200, "object_balanced_accuracy", "object_chance")
    assert sorted(d) == list(range(5))
    assert all(v == pytest.approx(1.0) for v, _ in d.values())
    assert all(boot.shape == (200,) for _, boot in d.values())
