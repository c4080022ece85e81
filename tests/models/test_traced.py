"""The traced adapter (models/traced.py): merge points read from a torch.fx graph, checked against the
hand-declared models they must equal.

The equivalence tests trace a hand-declared model THROUGH its bench.flow modules (every Merge inlined into the
plain add / cat it computes when idle), read the merge points back from that raw graph, and require the same
identity flow (roles, kinds, stages, levels, shapes, shortcut kinds) and the same records from every built-in
ablation on the same weights. ``test_swapped_roles_are_caught`` is their negative control: with the reading's
roles swapped (``traced_graph.ROLES``) the same comparison must fail.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import timm
import torch
from torch import nn

from bench.ablations.base import AblationContext
from bench.ablations.path_gradients import input_gradients, path_edges
from bench.data import Task, TaskInfo, TensorSplit
from bench.errors import BenchError
from bench.evaluate import predict_stats
from bench.flow import DropBranch, Merge, ResidualBlock, edited, identity_flow
from bench.metrics import bootstrap_weights, chance_outcome
from bench.models import traced_graph
from bench.models.resnet_cifar import cifar_resnet
from bench.models.timm_resnet import timm_resnet
from bench.models.traced import traced
from bench.models.traced_graph import FlowTracer, read_flow, trace
from bench.models.unet import unet
from bench.params import validate_params
from bench.registry import ABLATIONS, ARCHITECTURES
from tests.ablations.test_path_gradients_all_paths import all_paths_error
from tests.helpers import one_torch_thread

CPU = torch.device("cpu")
SIZE = 16
CLS = TaskInfo("classification", 3, image_size=(SIZE, SIZE))
SEG = TaskInfo("segmentation", 3, image_size=(SIZE, SIZE))
TEST_TIME = {  # every built-in test-time ablation that reads the model, at a few settings each
    "block_lesion": {},
    "multi_lesion": {"max_k": 3, "samples": 2},
    "reorder": {"swaps": [1, 2], "samples": 2},
    "skip_lesion": {"include_blocks": True, "calibration_batches": 2},
    "skip_scale": {"include_blocks": True, "betas": [0.0, 0.5, 1.0]},
    "path_gradients": {"ks": [0, 1, 3], "samples_per_k": 6, "batch_size": 6},
}
TRAIN_TIME = {"skip_removal": {"per_level": True}, "effective_depth_training": {"keep": 1}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with one_torch_thread():
        yield


def task(info: TaskInfo, n: int = 12) -> Task:
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    shape = (n,) if info.kind == "classification" else (n, SIZE, SIZE)
    split = TensorSplit(images, torch.randint(0, 3, shape, generator=g), (0.5,) * 3, (0.25,) * 3, pad=0, flip=False)
    return Task(info, split, split)


def varied(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and no zero-init branches: a lesion or a fill must show in the outputs."""
    torch.manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
    return model.eval()


def retraced(model: nn.Module) -> nn.Module:
    """The hand-declared model traced through its Merges (plain adds and cats), its merge points read back."""
    gm = trace(copy.deepcopy(model), "hand-declared", FlowTracer(inline=True))
    assert not any(isinstance(m, Merge | ResidualBlock) for m in gm.modules()), "the raw graph still declares merges"
    return read_flow(gm, torch.zeros(2, 3, SIZE, SIZE)).eval()


def context(model: nn.Module, t: Task) -> AblationContext:
    base = predict_stats(model, t.test, t.info, batch_size=6, device=CPU)
    chance = chance_outcome(t.train.targets(), t.test.targets(), t.info)
    return AblationContext(model, identity_flow(model), t, CPU, 0, base, chance, bootstrap_weights(base.n, 20, 0),
                           eval_batch_size=6)


def renamed(obj, names: dict[str, str]):
    if isinstance(obj, str):
        return names.get(obj, obj)
    if isinstance(obj, dict):
        return {k: renamed(v, names) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [renamed(v, names) for v in obj]
    return obj


def described(point) -> str:
    return json.dumps({k: v for k, v in dataclasses.asdict(point).items() if k not in ("name", "merge")}, sort_keys=True)


def unordered(records: list) -> list[str]:
    """Records as a multiset, the names in each key as a set: the hand U-Net lists its skips finest first."""
    def key(k: dict) -> dict:
        return {f: sorted(v) if isinstance(v, list) else v for f, v in k.items()}

    return sorted(json.dumps({**r, "key": key(r["key"])}, sort_keys=True, default=str) for r in records)


def matched(hand, read) -> dict[str, str] | None:
    """Hand-declared point name -> traced point name, pairing equal descriptions in forward order (the hand U-Net
    registers its skips finest first, the graph meets them coarsest first); None when the sets differ."""
    if sorted(map(described, hand)) != sorted(map(described, read)):
        return None
    pool: dict[str, list[str]] = {}
    for p in read:
        pool.setdefault(described(p), []).append(p.name)
    return {p.name: pool[described(p)].pop(0) for p in hand}


def mismatch(hand: nn.Module, read: nn.Module, t: Task) -> str | None:
    """The first difference between the two models' identity flows or ablation results; None when equal."""
    fh, fr = identity_flow(hand), identity_flow(read)
    names = matched(fh.points, fr.points)
    if names is None or [names[p.name] for p in fh.blocks] != [p.name for p in fr.blocks]:
        return f"identity flows differ: {[described(p) for p in fh.points]} vs {[described(p) for p in fr.points]}"
    x = next(iter(t.test.batches(6, train=False)))[0]
    with torch.no_grad():
        if not torch.equal(hand(x), read(x)):
            return "intact outputs differ"
    for name, params in TEST_TIME.items():
        ablation = ABLATIONS.get(name)(**params)
        if ablation.applicable(fh) is not None:
            if ablation.applicable(fr) is None:
                return f"{name}: applicable to the traced model only"
            continue
        results = [ablation.run(context(m, t)) for m in (hand, read)]
        records = [unordered(renamed(results[0].records, names)), unordered(results[1].records)]
        if records[0] != records[1]:
            return f"{name}: records differ: {records[0][:2]} vs {records[1][:2]}"
        if results[0].summary.model_dump() != results[1].summary.model_dump():
            return f"{name}: summaries differ"
    for name, params in TRAIN_TIME.items():
        ablation = ABLATIONS.get(name)(**params)
        if ablation.applicable(fh) is not None:
            continue
        variants = [ablation.variants(fh), ablation.variants(fr)]
        if set(variants[0]) != set(variants[1]):
            return f"{name}: variants differ"
        for variant, edits in variants[0].items():
            if {names[k] for k in edits} != set(variants[1][variant]):
                return f"{name}: variant {variant} edits other merge points"
            outs = []
            for m, e in ((hand, edits), (read, variants[1][variant])):
                torch.manual_seed(0)  # KeepSubset draws its subset from the global RNG
                with edited(m, e), torch.no_grad():
                    outs.append(m.train()(x))
                m.eval()
            if not torch.equal(*outs):
                return f"{name}: variant {variant} computes otherwise"
    return None


HAND = {
    "cifar-A-post": lambda: cifar_resnet(CLS, depth=8, width=4, shortcut="A"),
    "cifar-A-pre": lambda: cifar_resnet(CLS, depth=8, width=4, shortcut="A", preact=True),
    "cifar-B-post": lambda: cifar_resnet(CLS, depth=8, width=4, shortcut="B"),
    "cifar-B-pre": lambda: cifar_resnet(CLS, depth=8, width=4, shortcut="B", preact=True),
    "unet": lambda: unet(SEG, depth=2, width=4, input_skip=True),
    "timm_resnet": lambda: timm_resnet(SEG, model_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8}),
}


@pytest.mark.parametrize("case", list(HAND))
def test_traced_reading_equals_the_hand_declared_model(case):
    torch.manual_seed(0)
    hand = varied(HAND[case]())
    read = retraced(hand)
    t = task(CLS if case.startswith("cifar") else SEG)
    assert mismatch(hand, read, t) is None
    flow = identity_flow(read)
    assert flow.points and all(p.name.startswith("merges.") for p in flow.points)


def test_swapped_roles_are_caught(monkeypatch):
    """Negative control: the comparison above fails once the reading swaps identity and branch."""
    for case, info in (("cifar-A-post", CLS), ("unet", SEG)):
        torch.manual_seed(0)
        hand = varied(HAND[case]())
        monkeypatch.setattr(traced_graph, "ROLES", lambda identity, branch: (branch, identity))
        swapped = retraced(hand)
        monkeypatch.undo()
        assert mismatch(hand, swapped, task(info)), case


TRACED_RESIDUAL = {  # residual nets through the public factory, small enough for all 2^n paths
    "timm:resnet18": {"channels": [8, 8, 8, 8], "stem_width": 8},
    "timm:vit_tiny_patch16_224": {"img_size": SIZE, "patch_size": 4, "depth": 2, "embed_dim": 16, "num_heads": 2},
    "tests.models.test_traced:tiny_resnet": {},
}


class TinyResNet(nn.Module):
    """A user's residual net written with plain adds, one projection shortcut, no bench code."""

    def __init__(self, width: int = 6):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
        self.down = nn.Sequential(nn.ReLU(), nn.Conv2d(width, 2 * width, 3, 2, 1))
        self.project = nn.Conv2d(width, 2 * width, 1, 2)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.body(x)
        x = self.project(x) + self.down(x)
        return self.fc(x.mean((2, 3)))


def tiny_resnet(width: int = 6) -> nn.Module:
    return TinyResNet(width)


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
@pytest.mark.parametrize("spec", list(TRACED_RESIDUAL))
def test_all_paths_sum_to_the_full_gradient_on_traced_residual_nets(spec, kind):
    torch.manual_seed(0)
    model = varied(traced(CLS if kind == "classification" else SEG, spec, **TRACED_RESIDUAL[spec])).double()
    flow = identity_flow(model)
    assert flow.residual_blocks and not flow.skips and len(flow.blocks) <= 8
    assert all_paths_error(model, kind) < 1e-9


def test_the_length_zero_path_carries_the_gradient_unchanged_along_identity_shortcuts():
    """Role-sensitive where the all-paths sum is not (it is symmetric in the two sides): in a ViT every shortcut is
    the identity and nothing sits between blocks, so the path through no branch hands the gradient at the last
    block's output to the first block's input unchanged."""
    torch.manual_seed(0)
    model = varied(traced(CLS, "timm:vit_tiny_patch16_224", **TRACED_RESIDUAL["timm:vit_tiny_patch16_224"])).double()
    flow = identity_flow(model)
    edges = path_edges(flow)
    x, y = torch.randn(1, 3, SIZE, SIZE, dtype=torch.float64), torch.tensor([1])
    zero = input_gradients(model, flow, x, y, torch.zeros(len(edges), 1, dtype=torch.float64), None)
    outputs = []
    hook = model.get_submodule(edges[-1].name).register_forward_hook(lambda m, a, out: outputs.append(out))
    loss = nn.functional.cross_entropy(model(x), y)
    hook.remove()
    (last,) = torch.autograd.grad(loss, outputs[0])
    assert torch.allclose(zero, last, rtol=0, atol=1e-12) and zero.abs().sum() > 0


def test_traced_features_equal_the_library_model_and_heads_fit_both_kinds():
    x = torch.randn(2, 3, SIZE, SIZE)
    for spec, kwargs in [("resnet18", TRACED_RESIDUAL["timm:resnet18"]),
                         ("vit_tiny_patch16_224", TRACED_RESIDUAL["timm:vit_tiny_patch16_224"])]:
        torch.manual_seed(0)
        ref = timm.create_model(spec, num_classes=0, global_pool="", **kwargs).eval()
        torch.manual_seed(0)
        model = traced(SEG, f"timm:{spec}", **kwargs).eval()
        with torch.no_grad():
            want = ref.forward_features(x)
            if want.ndim == 3:  # a ViT's tokens: the class token left out, patches laid out as a map
                want = want[:, 1:].transpose(1, 2).reshape(2, -1, SIZE // 4, SIZE // 4)
            assert torch.equal(model.trunk(x), want)
            assert model(x).shape == (2, 3, SIZE, SIZE)
        assert traced(CLS, f"timm:{spec}", **kwargs)(x).shape == (2, 3)
    flow = identity_flow(traced(SEG, "timm:vit_tiny_patch16_224", **TRACED_RESIDUAL["timm:vit_tiny_patch16_224"]))
    # the two merges of one transformer block form its unit (BlockGroup), their branches' kinds declared
    assert [(p.name, p.unit, p.branch) for p in flow.blocks] == [
        ("trunk.merges.blocks_0.0", "trunk.merges.blocks_0", "attention"),
        ("trunk.merges.blocks_0.1", "trunk.merges.blocks_0", "mlp"),
        ("trunk.merges.blocks_1.0", "trunk.merges.blocks_1", "attention"),
        ("trunk.merges.blocks_1.1", "trunk.merges.blocks_1", "mlp")]


def test_smp_long_skips_are_found_at_their_levels():
    torch.manual_seed(0)
    model = traced(SEG, "smp:Unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=[8, 8, 8]).eval()
    flow = identity_flow(model)
    assert [(s.kind, s.stage, s.channels) for s in flow.skips] == [("concat", 2, 64), ("concat", 1, 64)]
    assert [b.stage for b in flow.blocks] == [0, 0, 1, 1]
    torch.manual_seed(0)
    fpn = identity_flow(traced(SEG, "smp:FPN", encoder_name="resnet18", encoder_depth=3, decoder_segmentation_channels=32,
                               decoder_pyramid_channels=32))
    # p_k = p_(k+1) upsampled + lateral(c_k), one per level (smp pads a depth-3 encoder's pyramid with the input);
    # the fusion of the pyramid's levels (all upsampled from below) is no merge point
    assert [(s.kind, s.stage) for s in fpn.skips] == [("add", 2), ("add", 1), ("add", 0)]


def test_lesion_of_a_traced_block_skips_its_branch():
    torch.manual_seed(0)
    model = varied(traced(CLS, "tests.models.test_traced:tiny_resnet"))
    blocks = identity_flow(model).blocks
    assert [(b.shortcut, b.same_shape, b.stage) for b in blocks] == [("identity", True, 0), ("projection", False, 1)]
    ran = []
    branch = model.get_submodule(blocks[0].name).branch
    branch.register_forward_hook(lambda *_: ran.append(1))
    x = torch.randn(2, 3, SIZE, SIZE)
    with edited(model, {blocks[0].name: DropBranch()}), torch.no_grad():
        model(x)
    assert not ran  # the branch's nodes live in the block: a lesion does not compute them


class Symmetric(nn.Module):
    """Two equal convolutions added: which side is the identity cannot be read from the graph."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.a(x) + self.b(x)


class Declared(Symmetric):
    """The same, declared by hand as the docs show: the block stays as written."""

    def __init__(self):
        super().__init__()
        self.block = ResidualBlock(self.b, self.a, shortcut_kind="projection", same_shape=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x))


class Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.gate = nn.Conv2d(3, 4, 1), Branchy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.stem(x))


def symmetric() -> nn.Module:
    return Symmetric()


def declared() -> nn.Module:
    return Declared()


def untraceable() -> nn.Module:
    return Untraceable()


def test_what_the_graph_cannot_decide_is_one_line_naming_the_node_and_the_fix():
    with pytest.raises(ValueError, match=r"residual merge at node 'add' in <root>: both sides have 1 operations .*"
                                         r"declare that block by hand \(docs/protocols.md") as err:
        traced(CLS, "tests.models.test_traced:symmetric")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"torch.fx cannot trace it in gate \(Branchy\) .*register_notrace_module") as err:
        traced(CLS, "tests.models.test_traced:untraceable")
    assert "\n" not in str(err.value)
    model = traced(CLS, "tests.models.test_traced:declared")  # the fix the message names
    assert [(p.name, p.shortcut) for p in identity_flow(model).blocks] == [("trunk.merges.block", "projection")]


def test_parameters_are_validated_and_passed_on():
    factory = ARCHITECTURES.get("traced")
    params = validate_params(factory, {"model": "timm:resnet18", "img_size": 32}, "architectures.x")
    assert params == {"model": "timm:resnet18", "checkpoint": None, "img_size": 32}
    with pytest.raises(BenchError, match=r"architectures.x: img_size: inf is not a setting"):
        validate_params(factory, {"img_size": float("inf")}, "architectures.x")
    with pytest.raises(ValueError, match=r"'timm:resnet181' is not a timm model \(did you mean: resnet18"):
        traced(CLS, "timm:resnet181")
    with pytest.raises(ValueError, match=r"model 'timm:resnet18': TypeError: .*every key besides model and checkpoint"):
        traced(CLS, "timm:resnet18", no_such_key=1)
    with pytest.raises(ValueError, match=r"cannot import it"):
        traced(CLS, "no_such_package.nets:make")


def test_checkpoint_in_the_library_naming_loads_into_the_traced_model(tmp_path):
    kwargs = TRACED_RESIDUAL["timm:resnet18"]
    torch.manual_seed(5)
    src = timm.create_model("resnet18", num_classes=0, global_pool="", **kwargs).eval()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    torch.manual_seed(0)
    model = traced(CLS, "timm:resnet18", checkpoint=str(tmp_path / "w.pth"), **kwargs).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model.trunk(x), src.forward_features(x))
    assert model.pretraining["loaded"] == len(src.state_dict()) and model.pretraining["missing"] == 0
    assert np.isclose(sum(p.numel() for p in model.trunk.parameters()), sum(p.numel() for p in src.parameters()))


def tv_vit_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision ViT's final tokens (after its encoder's LayerNorm), the class token left out, as a map."""
    got = {}
    hook = model.encoder.register_forward_hook(lambda m, a, out: got.update(out=out))
    with torch.no_grad():
        model(x)
    hook.remove()
    tokens = got["out"][:, 1:]
    side = int(tokens.shape[1] ** 0.5)
    return tokens.transpose(1, 2).reshape(x.shape[0], -1, side, side)


def test_classifiers_are_cut_at_the_input_of_their_global_pooling():
    """The features are the input of the last global pooling on every path to the output (a dominator of it): a
    torchvision / factory ViT's final tokens (not its patch-embedding conv, not a map inside attention), a
    torchvision ConvNeXt's last stage (not the classifier's LayerNorm2d on the pooled map), a ResNet whose last
    stage is already 1x1 at this size. Each trunk equals the library's own features on the same weights."""
    import torchvision
    from torchvision.models.convnext import CNBlockConfig
    from torchvision.models.vision_transformer import VisionTransformer

    x = torch.randn(2, 3, SIZE, SIZE)
    tv_vit = {"image_size": SIZE, "patch_size": 4, "num_layers": 2, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32}
    convnext = {"block_setting": [CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)]}
    cases = [
        ("torchvision.models.vision_transformer:VisionTransformer", tv_vit, lambda: VisionTransformer(**tv_vit),
         tv_vit_tokens),
        ("torchvision.models.convnext:ConvNeXt", convnext,
         lambda: torchvision.models.convnext.ConvNeXt(**convnext), lambda m, x: m.features(x)),
        ("torchvision:resnet18", {}, torchvision.models.resnet18, lambda m, x: nn.Sequential(*list(m.children())[:-2])(x)),
    ]
    for pool in ("token", "avg"):  # timm's full model by factory path: the head is cut, the class token left out
        kw = {**TRACED_RESIDUAL["timm:vit_tiny_patch16_224"], "global_pool": pool}
        cases.append(("timm.models.vision_transformer:vit_tiny_patch16_224", kw,
                      lambda kw=kw: timm.create_model("vit_tiny_patch16_224", **kw),
                      lambda m, x: m.forward_features(x)[:, 1:].transpose(1, 2).reshape(2, -1, SIZE // 4, SIZE // 4)))
    for spec, kwargs, make, features in cases:
        torch.manual_seed(0)
        model = traced(CLS, spec, **kwargs).eval()
        torch.manual_seed(0)
        ref = make().eval()
        with torch.no_grad():
            got, want = model.trunk(x), features(ref, x)  # ConvNeXt's Linear on NHWC views: not bit-exact
            assert got.shape == want.shape and torch.allclose(got, want, rtol=0, atol=1e-5), spec
            base = model(x)
            flow = identity_flow(model)
            with edited(model, {b.name: DropBranch() for b in flow.blocks}):
                assert not torch.equal(model(x), base), spec  # every block found is on the path to the output
        if "vision_transformer" in spec:
            assert [b.branch for b in flow.blocks] == ["attention", "mlp"] * 2 and len({b.unit for b in flow.blocks}) == 2


class HeadOnly(nn.Module):
    """A classifier whose only global reduction is inside a squeeze-excitation gate (off the main path) and whose
    head flattens the map: where its head begins cannot be decided."""

    def __init__(self):
        super().__init__()
        self.stem, self.fc = nn.Conv2d(3, 4, 3, 2, 1), nn.Linear(4 * (SIZE // 2) ** 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x * torch.sigmoid(x.mean((2, 3), keepdim=True))
        return self.fc(x.flatten(1))


def head_only() -> nn.Module:
    return HeadOnly()


def test_an_undecidable_cut_is_one_line():
    with pytest.raises(ValueError, match=r"no global pooling .* lies on every path to its output .*return the feature "
                                         r"map from the model") as err:
        traced(CLS, "tests.models.test_traced:head_only")
    assert "\n" not in str(err.value)


class AssertedBlock(nn.Module):
    """A residual block whose output only an assert reads: what a ViT's encoder looked like cut at its stem."""

    def __init__(self):
        super().__init__()
        self.stem, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        y = h + self.c(torch.relu(h))
        torch._assert(y.dim() == 4, "a map")
        return h


def test_a_merge_off_the_path_to_the_features_is_an_error():
    gm = trace(AssertedBlock(), "asserted", FlowTracer())
    with pytest.raises(ValueError, match=r"the merge found at node .* does not feed the features .*read the graph "
                                         r"wrong") as err:
        read_flow(gm, torch.zeros(2, 3, SIZE, SIZE))
    assert "\n" not in str(err.value)


class Flat(nn.Module):
    """Four residual blocks written inline in one forward, no block modules: four units, no kinds."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.cs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for c in self.cs:
            h = c(torch.relu(x))
            torch._assert(h.dim() == 4, "a map")  # an assert on a branch's value belongs to the branch
            x = x + h
        return x


class SoftmaxBlock(nn.Module):
    """A user's pre-norm transformer block, its attention written out with torch.softmax."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.n1, self.qkv, self.proj = nn.LayerNorm(dim), nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.n2, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.n1(x)).chunk(3, dim=-1)
        x = x + self.proj(torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v)
        return x + self.mlp(self.n2(x))


class SoftmaxViT(nn.Module):
    def __init__(self, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 4, 4)
        self.blocks = nn.Sequential(SoftmaxBlock(dim), SoftmaxBlock(dim))
        self.fc = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(x).flatten(2).transpose(1, 2))
        return self.fc(x.mean(1))


def flat() -> nn.Module:
    return Flat()


def softmax_vit() -> nn.Module:
    return SoftmaxViT()


def test_units_are_transformer_blocks_only():
    """A BlockGroup only where one module's forward holds an attention and an MLP branch: inline residual adds stay
    separate units (reorder can exchange them), with no kinds; a user's block with a plain softmax is attention."""
    from bench.ablations.reorder import Reorder

    torch.manual_seed(0)
    flow = identity_flow(traced(CLS, "tests.models.test_traced:flat"))
    assert [(p.name, p.unit, p.branch) for p in flow.blocks] == [(f"trunk.merges.root_{i}", "", "") for i in range(4)]
    assert Reorder.groups(flow) == [[0, 1, 2, 3]]
    torch.manual_seed(0)
    model = traced(SEG, "tests.models.test_traced:softmax_vit")
    flow = identity_flow(model)
    assert [(p.name, p.unit, p.branch) for p in flow.blocks] == [
        (f"trunk.merges.blocks_{i}.{j}", f"trunk.merges.blocks_{i}", kind)
        for i in range(2) for j, kind in enumerate(["attention", "mlp"])]
    assert model.trunk(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 8, SIZE // 4, SIZE // 4)


class TwoBranch(nn.Module):
    """y = x + a(x) + b(x): two branches added to one identity (a parallel block)."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.a = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
        self.b = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return x + self.a(x) + self.b(x)


def two_branch() -> nn.Module:
    return TwoBranch()


def test_two_branches_on_one_identity_are_one_line_pointing_to_the_hand_declaration():
    with pytest.raises(ValueError, match=r"residual merge at node 'add_1' in <root>: its identity side holds another "
                                         r"merge .*x \+ a\(x\) \+ b\(x\).*declare that block by hand \(docs") as err:
        traced(CLS, "tests.models.test_traced:two_branch")
    assert "\n" not in str(err.value) and "_flow" not in str(err.value)


class CatUNet(nn.Module):
    """A two-level U-Net joining each skip by cat, in either order (``cat([skip, up])`` or ``cat([up, skip])``); the
    level-0 encoder map, which has negatives, also feeds a residual block followed by an in-place ReLU."""

    def __init__(self, skip_first: bool = True, width: int = 4):
        super().__init__()
        self.skip_first = skip_first
        self.e0, self.c = nn.Conv2d(3, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.e1 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.mid = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.u1, self.u0 = nn.ConvTranspose2d(width, width, 2, 2), nn.ConvTranspose2d(width, width, 2, 2)
        self.d1, self.d0 = nn.Conv2d(2 * width, width, 3, padding=1), nn.Conv2d(2 * width, width, 3, padding=1)

    def join(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        return torch.cat([skip, up] if self.skip_first else [up, skip], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.e0(x)
        h = self.act(s0 + self.c(s0))  # in place on the block's output: a lesion hands s0 itself on
        s1 = torch.relu(self.e1(h))
        y = torch.relu(self.d1(self.join(s1, self.u1(torch.relu(self.mid(s1))))))
        return self.d0(self.join(s0, self.u0(y)))


def cat_unet(skip_first: bool = True) -> nn.Module:
    return CatUNet(skip_first)


def test_long_skips_keep_the_model_s_cat_order_and_a_lesion_keeps_the_skip_intact():
    """The idle traced model computes the original (either cat order); lesioning the block hands its input on, and
    the in-place ReLU after it must not overwrite that input, which the level-0 skip also reads."""
    x = torch.randn(2, 3, SIZE, SIZE)
    for first in (True, False):
        torch.manual_seed(0)
        model = traced(SEG, "tests.models.test_traced:cat_unet", skip_first=first).eval()
        torch.manual_seed(0)
        ref = CatUNet(first).eval()
        flow = identity_flow(model)
        assert [(s.kind, s.stage) for s in flow.skips] == [("concat", 1), ("concat", 0)] and len(flow.blocks) == 1
        with torch.no_grad():
            assert torch.equal(model.trunk(x), ref(x)), first
            with edited(model, {flow.blocks[0].name: DropBranch()}):
                got = model.trunk(x)
            s0 = ref.e0(x)
            s1 = torch.relu(ref.e1(torch.relu(s0)))
            y = torch.relu(ref.d1(ref.join(s1, ref.u1(torch.relu(ref.mid(s1))))))
            assert torch.equal(got, ref.d0(ref.join(s0, ref.u0(y)))), first


def test_swin_reads_as_its_blocks_without_false_skips():
    """NHWC with window and head tensors whose first dimension is not the batch: 2 stages x 2 blocks x
    (attention, mlp), one unit per block, no long skip; the trunk is timm's features, channels first."""
    kwargs = {"img_size": 32, "window_size": 2, "embed_dim": 8, "depths": (2, 2), "num_heads": (1, 2)}
    torch.manual_seed(0)
    model = traced(CLS, "timm:swin_tiny_patch4_window7_224", **kwargs).eval()
    flow = identity_flow(model)
    assert not flow.skips
    assert [(b.unit[len("trunk.merges."):], b.branch, b.stage) for b in flow.blocks] == [
        (f"layers_{s}_blocks_{i}", kind, s) for s in range(2) for i in range(2) for kind in ("attention", "mlp")]
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224", num_classes=0, global_pool="", **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.trunk(x), ref.forward_features(x).permute(0, 3, 1, 2), rtol=0, atol=1e-5)


def test_stochastic_depth_drops_in_training_only():
    """Traced in training mode, timm's drop_path would have been frozen into the graph: every evaluation drew it."""
    kwargs = {**TRACED_RESIDUAL["timm:resnet18"], "drop_path_rate": 0.5, "zero_init_last": False}
    torch.manual_seed(0)
    model = traced(CLS, "timm:resnet18", **kwargs)
    torch.manual_seed(0)
    ref = timm.create_model("resnet18", num_classes=0, global_pool="", **kwargs).eval()
    x = torch.randn(4, 3, 2 * SIZE, 2 * SIZE)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.trunk(x), ref.forward_features(x)) and torch.equal(model.trunk(x), model.trunk(x))
        model.train()
        assert not torch.equal(model.trunk(x), model.trunk(x))


def test_bench_check_traced_says_a_reading_error_in_one_line_before_pytest(capsys):
    from bench.cli import main

    assert main(["check", "traced", "--set", "model=tests.models.test_traced:symmetric"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bench check traced --set: residual merge at node 'add'") and "\n" not in err
    assert main(["check", "traced", "--set", "model=timm:resnet18", "--set", "global_pool=avg"]) == 2
    assert "global_pool is set by bench" in capsys.readouterr().err
