"""The prefix-sharing sweep gives bit-identical outcomes to evaluating each edited model from scratch."""

from __future__ import annotations

import numpy as np
import torch

from bench.ablations.multi_lesion import MultiLesion
from bench.evaluate import predict_stats
from bench.flow import DropBranch, edited, identity_flow
from bench.models.resnet_cifar import cifar_resnet
from bench.models.unet import unet
from bench.sweep import evaluate_shared
from bench.tasks.synthetic import synthetic_shapes

CPU = torch.device("cpu")


def test_shared_prefix_equals_from_scratch():
    task = synthetic_shapes(target="image", n_train=8, n_test=70, image_size=16, num_classes=3)
    torch.manual_seed(0)
    model = cifar_resnet(task.info, depth=20, width=4).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    flow = identity_flow(model)
    singles = [{b.name: DropBranch()} for b in flow.blocks]
    multis = [{b: DropBranch() for b in names} for _, _, names in
              MultiLesion(max_k=4, samples=3).sample_sets(flow, 0)]
    sets = [{}, *singles, *multis]
    shared = evaluate_shared(model, flow, sets, task.test, task.info, batch_size=32, device=CPU)
    for edits, out in zip(sets, shared):
        with edited(model, edits):
            ref = predict_stats(model, task.test, task.info, batch_size=32, device=CPU)
        assert np.array_equal(out.stats, ref.stats)
    assert len({out.primary for out in shared}) > 1  # the lesions did something
    assert all(m.edit is None for m in model.modules() if hasattr(m, "edit"))


def test_models_without_a_trunk_fall_back():
    task = synthetic_shapes(target="pixel", n_train=8, n_test=8, image_size=16, num_classes=2)
    model = unet(task.info, depth=1, width=4)
    assert evaluate_shared(model, identity_flow(model), [{}], task.test, task.info, batch_size=8, device=CPU) is None
