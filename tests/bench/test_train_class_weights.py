"""``train.class_weights: balanced``: every class weighs the same in the loss, as in balanced accuracy.

Why it exists: CamVid's classification twin has 367 training labels, 62% of them one class (road) while
the test split's majority is another (building); with plain cross-entropy the first reference's U-Net heads
fitted the training majority and scored about chance on balanced accuracy (docs/protocols.md, "CamVid's
classification twin"). ``class_weight_cap`` bounds the rule's weights: a class seen once would get a weight
in the tens."""

from __future__ import annotations

import pytest
import torch

import bench.train
from bench.config import TrainConfig
from bench.data import Task, TaskInfo, TensorSplit
from bench.models.resnet_cifar import cifar_resnet
from bench.train import class_weights, train

CPU = torch.device("cpu")


def _split(labels: torch.Tensor) -> TensorSplit:
    images = torch.randint(0, 255, (len(labels), 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return TensorSplit(images, labels, (0.5,) * 3, (0.25,) * 3, pad=0)


def _task(labels: torch.Tensor, info: TaskInfo) -> Task:
    """Training labels as given; the test split holds other labels, so weights read from it would differ."""
    return Task(info, _split(labels), _split(torch.full_like(labels, info.num_classes - 1)))


def test_balanced_weights_are_n_over_c_times_class_count_and_the_largest_for_absent_classes():
    task = _task(torch.tensor([0, 0, 0, 1]), TaskInfo("classification", 3))
    assert torch.allclose(class_weights(task, "balanced", CPU), torch.tensor([4 / (2 * 3), 4 / (2 * 1), 4 / (2 * 1)]))
    assert class_weights(task, "none", CPU) is None


def test_balanced_weights_count_pixels_and_leave_out_the_ignore_index():
    masks = torch.zeros(2, 8, 8, dtype=torch.int64)
    masks[0, :2] = 1   # 16 pixels of class 1
    masks[1, :4] = 9   # 32 ignored pixels: not counted
    task = _task(masks, TaskInfo("segmentation", 2, ignore_index=9))
    n0, n1 = 128 - 16 - 32, 16
    expected = torch.tensor([(n0 + n1) / (2 * n0), (n0 + n1) / (2 * n1)])
    assert torch.allclose(class_weights(task, "balanced", CPU), expected)
    # weighted by these, each class's pixels carry the same total weight
    assert torch.isclose(expected[0] * n0, expected[1] * n1)


@pytest.mark.parametrize("how", ["none", "balanced"])
def test_training_passes_the_weights_to_the_loss(monkeypatch, how):
    task = _task(torch.tensor([0] * 12 + [1] * 4), TaskInfo("classification", 2, image_size=(8, 8)))
    seen = []
    real = bench.train.F.cross_entropy

    def recording(*args, weight=None, **kwargs):
        seen.append(weight)
        return real(*args, weight=weight, **kwargs)

    monkeypatch.setattr(bench.train.F, "cross_entropy", recording)
    model = cifar_resnet(task.info, depth=8, width=4)
    train(model, task, TrainConfig(epochs=1, batch_size=8, optimizer="adamw", lr=1e-3, class_weights=how),
          seed=0, device=CPU)
    assert len(seen) == 2
    if how == "none":
        assert all(w is None for w in seen)
    else:
        assert all(torch.allclose(w, torch.tensor([16 / (2 * 12), 16 / (2 * 4)])) for w in seen)


def test_a_cap_keeps_a_class_seen_once_from_outweighing_the_rest():
    task = _task(torch.tensor([0] * 99 + [1]), TaskInfo("classification", 3))  # class 1 once, class 2 never
    uncapped = class_weights(task, "balanced", CPU)
    assert float(uncapped[1] / uncapped[0]) == pytest.approx(99)
    capped = class_weights(task, "balanced", CPU, cap=10.0)
    assert torch.allclose(capped, torch.tensor([uncapped[0], 10 * uncapped[0], 10 * uncapped[0]]))


def test_a_cap_without_balanced_weights_is_refused_in_one_line(tmp_path):
    from bench.config import load_config
    from bench.errors import BenchError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("tasks:\n  c: {name: synthetic_shapes, target: image, n_train: 32, n_test: 16}\narchitectures:\n"
                   "  r: {name: cifar_resnet, depth: 8, width: 4}\ntrain: {epochs: 1, class_weight_cap: 5}\nablations: []\n")
    with pytest.raises(BenchError, match=r"c\.yaml: train: class_weight_cap caps balanced class weights.*set "
                                         r"class_weights: balanced or remove the cap"):
        load_config(cfg)


def test_last_epoch_loss_is_the_mean_of_the_last_epochs_step_losses_and_survives_a_resume(tmp_path):
    """``train.last_epoch_loss`` (what ``verdict.exclusion_loss: last_epoch`` reads): the mean of the own loss
    over the last steps_per_epoch steps — an epoch's worth even when the schedule ends mid-epoch, never the last
    batch alone; a run resumed from a checkpoint (at an epoch boundary, or the final mid-epoch one) records
    the same value."""
    task = _task(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1] * 2), TaskInfo("classification", 3))
    cfg = TrainConfig(epochs=2.5, batch_size=4, optimizer="adamw", lr=0.05)  # 4 steps an epoch, 10 in all
    losses: list[float] = []
    torch.manual_seed(0)
    log = train(cifar_resnet(task.info, depth=8, width=4), task, cfg, seed=0, device=CPU,
                on_step=lambda step, total, loss: losses.append(loss))
    assert len(losses) == 10 and log["final_loss"] == pytest.approx(losses[-1], abs=1e-6)
    assert log["last_epoch_loss"] == pytest.approx(sum(losses[6:]) / 4, abs=1e-6)  # steps 7-10, across the boundary
    assert log["last_epoch_loss"] != pytest.approx(log["final_loss"], abs=1e-6)  # not the last batch in disguise
    ckpt, kept = tmp_path / "ckpt.pt", []

    def keep_the_second_epochs_checkpoint(step: int, total: int, loss: float) -> None:
        if step == 9:  # written after step 8 (the end of epoch 2), overwritten after step 10
            kept.append(torch.load(ckpt, weights_only=False))

    torch.manual_seed(0)
    train(cifar_resnet(task.info, depth=8, width=4), task, cfg, seed=0, device=CPU, checkpoint=ckpt,
          on_step=keep_the_second_epochs_checkpoint)
    assert kept[0]["step"] == 8 and kept[0]["recent_losses"] == pytest.approx(losses[4:8], abs=1e-6)
    resumed = train(cifar_resnet(task.info, depth=8, width=4), task, cfg, seed=0, device=CPU, resume=kept[0])
    assert resumed["resumed_from_step"] == 8
    assert resumed["last_epoch_loss"] == pytest.approx(log["last_epoch_loss"], abs=1e-5)
    # the last checkpoint is written mid-epoch (step 10 of 12): a cell resumed from it trains nothing and
    # records the loss the checkpoint carried (an interrupted evaluation)
    done = train(cifar_resnet(task.info, depth=8, width=4), task, cfg, seed=0, device=CPU,
                 resume=torch.load(ckpt, weights_only=False))
    assert done["resumed_from_step"] == 10 and done["last_epoch_loss"] == pytest.approx(log["last_epoch_loss"], abs=1e-5)
