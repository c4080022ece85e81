"""``multi_head``: one network trained on the dense and the global labels of the same images, beside the
separate-networks arm. A tiny study runs end to end with both arms; the two cells of a joint unit hold the same
network (its dense head recomputed from the GLOBAL cell's weights gives the dense cell's stored statistics); the
trainer's loss is the weighted sum of the two heads' losses; bad configs are refused in one line; a study without
the block resolves as before."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import bench
from bench.config import StudyConfig, TrainConfig, load_config
from bench.errors import BenchError
from bench.evaluate import predict_stats
from bench.flow import identity_flow, set_edits
from bench.models.joint import JointHeads, joint_model, set_read, weights_hash
from bench.plan import Plan, Unit, build_model
from bench.registry import ARCHITECTURES, TASKS
from bench.train import Joint, class_weights, joint_loss, train

TASK = "{name: synthetic_shapes, target: %s, n_train: 64, n_test: 32, image_size: 16}"
CONFIG = f"""
name: multi_head
seeds: [0]
tasks:
  seg: {TASK % "pixel"}
  cls: {TASK % "image"}
architectures:
  unet: {{name: unet, depth: 2, width: 4}}
  unet_joint: {{name: unet, depth: 2, width: 4}}
multi_head: {{architectures: [unet_joint], dense: seg, global: cls, loss_weights: {{dense: 1.0, global: 0.5}}}}
train: {{epochs: 2, batch_size: 16, optimizer: adamw, lr: 0.02, class_weights: balanced}}
ablations:
  - {{name: skip_removal}}
  - {{name: skip_lesion, fills: [mean]}}
verdict:
  - {{label: separate, dense: seg, global: cls, ablation: skip_removal, architecture: unet, scale: recognition}}
  - {{label: joint, dense: seg, global: cls, ablation: skip_removal, architecture: unet_joint, scale: recognition}}
bootstrap: 100
"""


def write(tmp_path, text: str, name: str = "study.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi_head")
    res = bench.run(write(folder, CONFIG), out=folder / "run")
    return res, folder / "run"


def test_a_study_with_a_separate_and_a_joint_arm_runs_end_to_end(run):
    res, folder = run
    ids = {c.id for c in res.cells}
    assert {f"{t}__{a}__{v}__s0" for t in ("seg", "cls") for a in ("unet", "unet_joint")
            for v in ("baseline", "no_identity")} <= ids
    assert all(c.status == "ok" for c in res.cells)
    assert [v.label for v in res.verdicts] == ["separate", "joint"]
    # both arms' train-time D, dense and global, read by the verdict's code unchanged
    d = {(c.task, c.architecture): c.dependence.estimate for c in res.comparisons
         if c.ablation == "skip_removal" and c.headline}
    assert set(d) == {(t, a) for t in ("seg", "cls") for a in ("unet", "unet_joint")}
    joint = next(v for v in res.verdicts if v.label == "joint")
    if joint.headline is None:  # a tiny network's D can be undefined (baseline at chance): the verdict says where
        assert "unet_joint" in joint.headline_missing
    else:
        assert joint.headline.architecture == "unet_joint"
        assert joint.headline.difference.estimate == pytest.approx(d["seg", "unet_joint"] - d["cls", "unet_joint"],
                                                                   abs=1e-5)
    assert res.config["multi_head"]["architectures"] == ["unet_joint"]
    # the two arms share the headline ablation: their interaction (joint − separate) is computed, seed by seed
    assert res.interaction is not None and res.interaction.architecture == "unet → unet_joint"
    separate = next(v for v in res.verdicts if v.label == "separate")
    if joint.headline is not None and separate.headline is not None:
        for seed, value in res.interaction.difference.per_seed.items():
            assert value == pytest.approx(joint.headline.difference.per_seed[seed]
                                          - separate.headline.difference.per_seed[seed], abs=2e-6)
    for c in res.cells:
        recorded = c.train.get("joint")
        if c.architecture == "unet":
            assert recorded is None and "final_joint_loss" not in c.train
            continue
        assert recorded["head"] == ("dense" if c.task == "seg" else "global")
        assert recorded["loss_weights"] == {"dense": 1.0, "global": 0.5}
        assert c.train["final_joint_loss"] > 0
    # each cell evaluates its own head: the joint network's global cell has image-level statistics
    glob = next(c for c in res.cells if c.id == "cls__unet_joint__baseline__s0")
    assert glob.task_kind == "classification" and "skip_lesion" in glob.ablations


def test_the_two_cells_of_a_joint_unit_hold_the_same_network(run):
    res, folder = run
    plan = Plan.build(folder / "config.resolved.yaml")
    seg, cls = (TASKS.build({"name": "synthetic_shapes", "target": t, "n_train": 64, "n_test": 32, "image_size": 16})
                for t in ("pixel", "image"))
    for variant in ("baseline", "no_identity"):
        cells = {c.task: c for c in res.cells if c.architecture == "unet_joint" and c.variant == variant}
        assert cells["seg"].train["joint"]["weights_sha256"] == cells["cls"].train["joint"]["weights_sha256"]
        # the dense head of the network the GLOBAL cell trained (its final checkpoint) gives the dense cell's numbers
        unit = Unit("seg", "unet_joint", variant, 0, None if variant == "baseline" else "skip_removal")
        model = plan.model(unit, seg.info, cls.info)
        state = torch.load(folder / "checkpoints" / f"cls__unet_joint__{variant}__s0.pt", weights_only=True)
        model.load_state_dict(state["model"])
        flow = identity_flow(model)
        set_edits([(model.get_submodule(flow[n].merge), e) for n, e in plan.edits(unit).items()])
        assert weights_hash(model) == cells["seg"].train["joint"]["weights_sha256"]
        stats = predict_stats(model, seg.test, seg.info, batch_size=500, device=torch.device("cpu")).stats
        with np.load(folder / "cells" / f"seg__unet_joint__{variant}__s0.npz") as z:
            np.testing.assert_array_equal(stats, z["stats"])
    # and the separate arm's two networks are two networks
    sep = {c.task: c for c in res.cells if c.architecture == "unet" and c.variant == "baseline"}
    a = torch.load(folder / "checkpoints" / f"{sep['seg'].id}.pt", weights_only=True)["model"]
    b = torch.load(folder / "checkpoints" / f"{sep['cls'].id}.pt", weights_only=True)["model"]
    assert not torch.equal(a["encoders.0.0.weight"], b["encoders.0.0.weight"])


def tiny_joint(seed: int = 0):
    seg, cls = (TASKS.build({"name": "synthetic_shapes", "target": t, "n_train": 32, "n_test": 8, "image_size": 16})
                for t in ("pixel", "image"))
    torch.manual_seed(seed)
    model = joint_model(ARCHITECTURES.build({"name": "unet", "depth": 2, "width": 4}, seg.info), seg.info, cls.info)
    return model, seg, cls


def test_the_joint_loss_is_the_weighted_sum_of_the_heads_losses():
    model, seg, cls = tiny_joint()
    weights = (0.3, 2.0)  # asymmetric: a swapped or dropped weight changes the sum
    cw = (class_weights(seg, "balanced", torch.device("cpu")), class_weights(cls, "balanced", torch.device("cpu")))
    joint = Joint(seg, cls, weights, "global")
    x, (y_dense, y_global) = next(joint.batches(16, train=True, epoch=0, seed=0))
    before = copy.deepcopy(set_read(model, "both")).train()
    dense, glob = before(x)
    want_d = F.cross_entropy(dense, y_dense, weight=cw[0])
    want_g = F.cross_entropy(glob, y_global, weight=cw[1])
    total, parts = joint_loss((dense, glob), (y_dense, y_global), weights, cw, (-100, -100), 0.0)
    assert total.item() == pytest.approx(0.3 * want_d.item() + 2.0 * want_g.item(), rel=1e-6)
    assert (parts[0].item(), parts[1].item()) == pytest.approx((want_d.item(), want_g.item()), rel=1e-6)
    # the trainer takes one step on that same batch with that loss: its log says the joint and the own head's loss
    cfg = TrainConfig(epochs=1, batch_size=16, max_steps_per_epoch=1, optimizer="adamw", lr=0.01,
                      class_weights="balanced")
    log = train(model, cls, cfg, seed=0, device=torch.device("cpu"), joint=joint)
    assert log["final_joint_loss"] == pytest.approx(0.3 * want_d.item() + 2.0 * want_g.item(), abs=2e-6)
    assert log["final_loss"] == pytest.approx(want_g.item(), abs=2e-6)  # the global cell's own head
    assert isinstance(model.head, JointHeads) and model.head.read == "global"  # evaluated through its own head
    assert model(x).shape == (16, cls.info.num_classes)


def test_the_trainer_refuses_two_tasks_with_different_images():
    _, seg, _ = tiny_joint()
    other = TASKS.build({"name": "synthetic_shapes", "target": "image", "n_train": 32, "n_test": 8, "image_size": 16,
                         "seed": 1})
    with pytest.raises(BenchError, match=r"^multi_head: the dense and the global task's training batch 0 .*same images"):
        next(Joint(seg, other, (1.0, 1.0), "dense").batches(16, train=True, epoch=0, seed=0))


@pytest.mark.parametrize(("change", "message"), [
    (("cls: " + TASK % "image", "cls: {name: synthetic_shapes, target: image, n_train: 64, n_test: 32, image_size: 16, "
                                "noise: 0.5}"),
     r"study.yaml: multi_head: seg and cls do not have the same images \(noise: 0.3 vs 0.5\); give both the same"),
    (("cls: " + TASK % "image", "cls: {name: classify_from_masks, source: {name: synthetic_shapes, n_train: 64, "
                                "n_test: 32, image_size: 16, seed: 3}}"),
     r"study.yaml: multi_head: cls is not the classification twin of seg \(source.seed differs from seg's\)"),
    (("global: cls, loss", "global: clss, loss"),
     r"study.yaml: multi_head.global: unknown task alias 'clss' \(did you mean: cls\?\)"),
    (("global: cls, loss", "global: seg, loss"),
     r"study.yaml: multi_head.global: task 'seg' is a segmentation task; multi_head.global needs a classification"),
    (("architectures: [unet_joint]", "architectures: [unet_jiont]"),
     r"study.yaml: multi_head.architectures.0: unknown architecture alias 'unet_jiont' \(did you mean: unet_joint"),
    (("bootstrap: 100", "bootstrap: 100\nmatrix: [[seg, unet], [cls, unet], [seg, unet_joint]]"),
     r"study.yaml: multi_head.architectures.0: the matrix has no pair \[cls, unet_joint\]; .*add the pair to matrix"),
    (("  seg: ", "  seg2: " + TASK % "pixel" + "\n  seg: "),
     r"study.yaml: multi_head.architectures.0: the matrix pairs the joint network 'unet_joint' with 'seg2'"),
    (("loss_weights: {dense: 1.0, global: 0.5}", "loss_weights: {dense: 1.0, global: 0}"),
     r"study.yaml: multi_head.loss_weights.global: Input should be greater than 0"),
])
def test_bad_multi_head_configs_are_refused_in_one_line(tmp_path, change, message):
    old, new = change
    assert old in CONFIG
    with pytest.raises(BenchError, match=message) as err:
        load_config(write(tmp_path, CONFIG.replace(old, new, 1)))
    assert "\n" not in str(err.value)


def test_a_twin_of_the_same_source_is_accepted(tmp_path):
    twin = CONFIG.replace("  seg: " + TASK % "pixel", "  seg: &seg " + TASK % "pixel").replace(
        "cls: " + TASK % "image", "cls: {name: classify_from_masks, source: *seg}")
    assert load_config(write(tmp_path, twin)).joint_of("unet_joint").global_ == "cls"


def test_headline_only_keeps_the_joint_block_of_the_kept_architectures(tmp_path):
    cfg = load_config(write(tmp_path, CONFIG + "headline_only: true\n"))
    assert cfg.resolved()["multi_head"]["architectures"] == ["unet_joint"]
    only_separate = CONFIG.replace(
        "  - {label: joint, dense: seg, global: cls, ablation: skip_removal, architecture: unet_joint, scale: recognition}\n",
        "")
    cfg = load_config(write(tmp_path, only_separate + "headline_only: true\n"))
    assert "multi_head" not in cfg.resolved() and set(cfg.architectures) == {"unet"}


def test_a_study_without_multi_head_resolves_and_plans_as_before(tmp_path):
    """No new key in its resolved config (config.resolved.yaml, the run folder's hash), its units built as before
    and the code its cells record unchanged (no partner task)."""
    without = CONFIG.replace("multi_head: {architectures: [unet_joint], dense: seg, global: cls, loss_weights: "
                             "{dense: 1.0, global: 0.5}}\n", "")
    plan = Plan.build(write(tmp_path, without))
    fields = {f.alias or n for n, f in StudyConfig.model_fields.items()} - {"executor", "multi_head"}
    assert "\nmulti_head:" not in plan.yaml and list(plan.resolved) == [n for n in plan.resolved if n in fields]
    assert set(plan.resolved) == fields
    assert plan.cfg.joint_of("unet_joint") is None and all(plan.partner(u) is None for u in plan.units)
    assert all(set(plan.code_of(u)) == {f"architecture:{u.arch}", f"task:{u.task}", *(
        f"ablation:{n}" for n in plan.versions(u))} for u in plan.units)
    u = plan.units[0]
    model = plan.model(u, TASKS.build({"name": "synthetic_shapes", "n_train": 8, "n_test": 8, "image_size": 16}).info)
    assert not isinstance(model.head, JointHeads)
    with_block = Plan.build(write(tmp_path, CONFIG, "joint.yaml"))
    assert with_block.hash != plan.hash and yaml.safe_load(with_block.yaml)["multi_head"]["dense"] == "seg"
    assert {f"task:{'cls' if u.task == 'seg' else 'seg'}" for u in with_block.units if u.arch == "unet_joint"} <= {
        k for u in with_block.units if u.arch == "unet_joint" for k in with_block.code_of(u)}


def test_an_architecture_without_bench_heads_is_refused(tmp_path, monkeypatch):
    import bench.plan as plan_module

    def bare(cfg, alias, info, **kw):
        model = build_model(cfg, alias, info, **kw)
        model.head = torch.nn.Identity()
        return model

    monkeypatch.setattr(plan_module, "build_model", bare)
    with pytest.raises(BenchError, match=r"architectures.unet_joint: multi_head: UNet has no make_head segmentation "
                                         r"head at model.head \(found Identity\)"):
        Plan.build(write(tmp_path, CONFIG))
