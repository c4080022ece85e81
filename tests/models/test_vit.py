"""The tiny ViT (models/vit.py): its residual stream declared branch by branch, blocks that reorder whole,
taps that are long skips, both heads.
Speed is measured, not tested: models/vit.py's docstring gives images/s of one training step.
"""

from __future__ import annotations

import pytest
import torch

from bench.ablations.base import AblationContext
from bench.ablations.lesion import BlockLesion
from bench.ablations.path_gradients import PathGradients, path_edges
from bench.ablations.reorder import Reorder, kendall_tau, slots
from bench.ablations.skip_lesion import SkipLesion
from bench.ablations.skip_removal import SkipRemoval
from bench.data import Task, TaskInfo, TensorSplit
from bench.evaluate import predict_stats
from bench.flow import DropBranch, FillIdentity, edited, identity_flow, reordered
from bench.metrics import bootstrap_weights, chance_outcome
from bench.models.resnet_cifar import cifar_resnet
from bench.models.vit import vit
from tests.helpers import one_torch_thread

CLS = TaskInfo("classification", 4, image_size=(16, 16))
SEG = TaskInfo("segmentation", 4, image_size=(16, 16))
SMALL = {"depth": 3, "width": 16, "heads": 2, "patch": 4}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with one_torch_thread():
        yield


def x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def build(info: TaskInfo = CLS, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return vit(info, **{**SMALL, **kw}).eval()


def run(model: torch.nn.Module, inp: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(inp)


@pytest.mark.parametrize("info, pool, shape", [(CLS, "cls", (4, 4)), (CLS, "mean", (4, 4)),
                                               (SEG, "cls", (4, 4, 16, 16)), (SEG, "mean", (4, 4, 16, 16))])
@pytest.mark.parametrize("taps", [(), (1, 2)])
@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_both_heads_give_their_task_shapes(info, pool, shape, taps, stem):
    assert run(build(info, pool=pool, taps=taps, stem=stem), x()).shape == shape


def test_declaration_lists_two_branches_per_block_with_their_kinds_and_unit():
    flow = identity_flow(build(depth=4))
    assert [(b.name, b.branch, b.unit) for b in flow.blocks] == [
        (f"blocks.{i}.{part}", kind, f"blocks.{i}") for i in range(4) for part, kind in (("attn", "attention"), ("mlp", "mlp"))]
    assert all(b.has_identity and b.shortcut == "identity" and b.same_shape and b.lesionable for b in flow.blocks)
    assert not flow.skips
    assert len(path_edges(flow)) == 8 and PathGradients().applicable(flow) is None


def test_other_architectures_declare_no_kinds_or_units():
    flow = identity_flow(cifar_resnet(CLS, depth=14, width=4))
    assert all(b.branch == "" and b.unit == "" for b in flow.blocks)
    assert slots(flow) == list(range(len(flow.blocks)))  # reorder's places: every block, as before


@pytest.mark.parametrize("which", ["attn", "mlp"])
def test_lesion_of_a_branch_is_exactly_the_identity_at_that_block(which):
    model = build()
    block = model.get_submodule(f"blocks.1.{which}")
    seen = []
    hook = block.register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), out.clone())))
    with edited(model, {f"blocks.1.{which}": DropBranch()}):
        lesioned = run(model, x())
    hook.remove()
    (inp, out), = seen
    assert torch.equal(out, inp)
    assert not torch.equal(lesioned, run(model, x()))


def labelled_task(n: int = 24) -> Task:
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 4
    split = TensorSplit(images, labels, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), pad=0, flip=False)
    return Task(CLS, split, split)


def context(model: torch.nn.Module, task: Task) -> AblationContext:
    cpu = torch.device("cpu")
    base = predict_stats(model, task.test, task.info, batch_size=8, device=cpu)
    chance = chance_outcome(task.train.targets(), task.test.targets(), task.info)
    return AblationContext(model, identity_flow(model), task, cpu, 0, base, chance, bootstrap_weights(base.n, 10, 0),
                           eval_batch_size=8)


def test_block_lesion_reports_attention_mlp_and_whole_blocks_separately():
    out = BlockLesion().run(context(build(), labelled_task()))
    singles = [r["key"] for r in out.records[:6]]
    assert [k["branch"] for k in singles] == ["attention", "mlp"] * 3
    wholes = [r["key"] for r in out.records[6:]]
    assert [(k["block"], k["branch"]) for k in wholes] == [(f"blocks.{i}", "attention+mlp") for i in range(3)]
    assert out.summary.blocks == 6 and set(out.summary.dependence_by_branch) == {"attention", "mlp", "attention+mlp"}
    dumped = BlockLesion.Summary.model_validate(out.summary).model_dump()
    assert "dependence_by_branch" in dumped and BlockLesion.Record.model_validate(out.records[0]).model_dump()["key"]["branch"]


def test_whole_block_lesion_is_the_identity_over_the_block():
    model = build()
    seen = []
    hook = model.blocks[2].register_forward_hook(lambda m, args, out: seen.append((args[0].clone(), out.clone())))
    with edited(model, {"blocks.2.attn": DropBranch(), "blocks.2.mlp": DropBranch()}):
        run(model, x())
    hook.remove()
    assert torch.equal(seen[0][1], seen[0][0])


def test_an_undeclared_architecture_keeps_its_lesion_records_and_summary():
    task = labelled_task()
    model = cifar_resnet(CLS, depth=8, width=4).eval()
    out = BlockLesion().run(context(model, task))
    assert len(out.records) == 3 and all("branch" not in BlockLesion.Record.model_validate(r).model_dump()["key"]
                                         for r in out.records)
    assert set(BlockLesion.Summary.model_validate(out.summary).model_dump()) == {
        "dependence", "dependence_non_downsampling", "max_dependence", "blocks"}


def test_reorder_exchanges_whole_transformer_blocks():
    model = build(depth=4)
    flow = identity_flow(model)
    assert Reorder.groups(flow) == [[0, 2, 4, 6]]  # each block stood for by its attention branch
    ablation = Reorder(swaps=[1, 2], samples=3)
    names = [b.unit or b.name for b in flow.blocks]
    for _, _, order in ablation.permutations(flow, 0):
        moved = {names[i] for i, j in enumerate(order) if i != j}
        assert moved and moved <= {f"blocks.{i}" for i in range(4)}
        assert -1 <= kendall_tau([slots(flow).index(order[i]) for i in slots(flow)]) < 1
    inp = x()
    with torch.no_grad():
        t = model.embed(inp)
        for i in (0, 2, 1, 3):  # blocks 1 and 2 exchanged, each with its attention and MLP
            t = model.blocks[i](t)
        expected = model.head(model.norm(t).transpose(1, 2), inp.shape[-2:])
    with reordered(model, {"blocks.1": "blocks.2", "blocks.2": "blocks.1"}):
        assert torch.equal(run(model, inp), expected)
    assert not torch.equal(run(model, inp), expected)


def test_reorder_runs_on_the_vit_and_records_moved_blocks():
    out = Reorder(swaps=[1], samples=2).run(context(build(), labelled_task()))
    assert len(out.records) == 2
    assert all(r["key"]["moved"] and all(m.count(".") == 1 for m in r["key"]["moved"]) for r in out.records)


@pytest.mark.parametrize("info", [CLS, SEG])
def test_taps_are_skips_and_skip_removal_zeroes_them(info):
    model = build(info, taps=(1, 2))
    flow = identity_flow(model)
    assert [(s.name, s.stage, s.kind) for s in flow.skips] == [("skips.0", 1, "concat"), ("skips.1", 2, "concat")]
    assert PathGradients().applicable(flow)  # taps bypass blocks in parallel: no path decomposition
    removal = SkipRemoval(levels=[1, 2])
    variants = removal.variants(flow)
    assert set(variants["no_identity_levels1_2"]) == {"skips.0", "skips.1"}  # the taps alone
    assert len(variants["no_identity"]) == 2 + 6  # the taps and the residual stream
    merged = []
    hook = model.skips[1].register_forward_hook(lambda m, args, out: merged.append(out))
    base = run(model, x())
    with edited(model, variants["no_identity_levels1_2"]):
        removed = run(model, x())
    hook.remove()
    width = SMALL["width"]
    assert merged[1][:, width:].abs().sum() == 0 and merged[1][:, :width].abs().sum() > 0
    assert not torch.equal(base, removed)  # both heads read the taps (docs/protocols.md)
    assert SkipLesion().applicable(flow) is None


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_taps_reach_the_classification_head(pool):
    model = build(CLS, pool=pool, taps=(2,))
    base = run(model, x())
    with edited(model, {"skips.0": FillIdentity("zero")}):
        assert not torch.equal(run(model, x()), base)


def test_plain_twin_trains_without_any_identity():
    model = build(has_identity=False)
    flow = identity_flow(model)
    assert not any(b.has_identity for b in flow.blocks) and SkipRemoval().applicable(flow)
    model.train()(x()).square().mean().backward()


@pytest.mark.parametrize("kw, message", [({"width": 16, "heads": 3}, "divisible"), ({"patch": 5}, "divide"),
                                         ({"taps": (3,)}, "1..2"), ({"taps": (1, 1)}, "distinct"),
                                         ({"stem": "conv", "patch": 12}, "power of 2")])
def test_bad_parameters_name_the_fix(kw, message):
    with pytest.raises(ValueError, match=message):
        vit(CLS, **{**SMALL, **kw})
