"""Built-in architectures: published sizes, adapters equal to the originals, safe checkpoint loading."""

from __future__ import annotations

import pickle

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision
from torch.testing import assert_close

from bench.data import TaskInfo
from bench.errors import BenchError
from bench.flow import DropBranch, FillIdentity, edited, identity_flow
from bench.models.resnet_cifar import cifar_resnet
from bench.models.smp_unet import smp_unet
from bench.models.timm_resnet import timm_resnet
from tests.helpers import one_torch_thread

CLS = TaskInfo("classification", 10, image_size=(32, 32))
SEG = TaskInfo("segmentation", 3, image_size=(32, 32), ignore_index=255)
SMALL_TIMM = {"channels": (64, 16, 32, 64)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models on a shared 2-core box: intra-op threads only contend."""
    with one_torch_thread():
        yield


def x(size: int = 64) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def nparams(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- He et al. 2016, Table 6 ---------------------------------------------------------------------------

@pytest.mark.parametrize("depth, published", [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6), (110, 1.7e6)])
def test_cifar_resnet_parameter_counts_match_he_et_al(depth, published):
    n = nparams(cifar_resnet(CLS, depth=depth))  # option A, post-activation, 10 classes
    assert abs(n - published) / published < 0.02, n


def test_option_a_preact_resnet_fully_lesioned_depends_only_on_stem_and_head():
    model = cifar_resnet(CLS, depth=14, width=4, preact=True).eval()
    blocks = identity_flow(model).residual_blocks
    assert all(b.lesionable for b in blocks)
    inp = x(32)
    with edited(model, {b.name: DropBranch() for b in blocks}):
        model(inp).sum().backward()
        with torch.no_grad():
            before = model(inp)
            for b in blocks:  # any branch weights: the output cannot move
                for p in model.get_submodule(b.name).branch.parameters():
                    p.add_(torch.randn_like(p))
            assert torch.equal(model(inp), before)
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    last = len(model.trunk) - 2  # the final BN of pre-activation, before the last ReLU
    assert trained == {"trunk.0.weight", f"trunk.{last}.weight", f"trunk.{last}.bias", "head.fc.weight",
                       "head.fc.bias"}


# -- timm ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs", [("resnet18", {}), ("resnet26d", {"drop_path_rate": 0.1})])
def test_timm_adapter_reproduces_the_original(name, kwargs):
    torch.manual_seed(0)
    ref = timm.create_model(name, num_classes=0, global_pool="", **kwargs).eval()
    torch.manual_seed(0)
    ours = timm_resnet(CLS, model_name=name, model_kwargs=kwargs).eval()
    with torch.no_grad():
        assert_close(ours.trunk(x()), ref(x()), rtol=0, atol=1e-6)
    assert nparams(ours.trunk) == nparams(ref)
    assert ours.pretraining is None


def test_timm_blocks_are_declared_and_lesion_to_their_shortcut():
    model = timm_resnet(SEG, model_kwargs={**SMALL_TIMM, "zero_init_last": False}).eval()
    flow = identity_flow(model)
    assert [b.stage for b in flow.blocks] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [b.shortcut for b in flow.blocks] == ["identity", "identity"] + ["projection", "identity"] * 3
    assert model(x(32)).shape == (2, 3, 32, 32)
    name = flow.blocks[2].name
    block = model.get_submodule(name)
    h = torch.randn(2, 64, 8, 8)
    with edited(model, {name: DropBranch()}), torch.no_grad():
        assert torch.equal(block(h), torch.relu(block.shortcut(h)))  # y = act(downsample(x))
    assert not torch.equal(block(h), torch.relu(block.shortcut(h)))


def test_timm_resnet_rejects_unknown_and_non_resnet_models():
    with pytest.raises(ValueError, match="did you mean: resnet18"):
        timm_resnet(CLS, model_name="resnet181")
    with pytest.raises(ValueError, match="not a timm ResNet"):
        timm_resnet(CLS, model_name="mobilenetv3_small_050")


def test_timm_pretrained_offline_names_the_fix(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(BenchError, match="pass checkpoint: <local file>"):
        timm_resnet(CLS, pretrained=True)


# -- smp U-Net -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder, depth", [("resnet18", 5), ("resnet18", 3), ("resnet50", 3)])
def test_smp_adapter_reproduces_the_original(encoder, depth):
    channels = [256, 128, 64, 32, 16][:depth]
    torch.manual_seed(0)
    ref = smp.Unet(encoder, encoder_weights=None, encoder_depth=depth, classes=1, decoder_channels=channels).eval()
    torch.manual_seed(0)
    ours = smp_unet(SEG, encoder=encoder, encoder_depth=depth).eval()
    with torch.no_grad():
        assert_close(ours.decoder(ours.encoder(x())), ref.decoder(ref.encoder(x())), rtol=0, atol=1e-6)
    flow = identity_flow(ours)
    assert [s.stage for s in flow.skips] == list(range(depth - 1, 0, -1))
    assert [s.channels for s in flow.skips] == list(ref.encoder.out_channels[1:-1])[::-1]
    assert {b.stage for b in flow.blocks} == set(range(depth - 1))
    assert not hasattr(ours.encoder, f"layer{depth}")  # smp keeps unused layers; declared blocks must run


def test_smp_skip_removal_equals_a_zero_skip_fed_to_smp():
    torch.manual_seed(0)
    ref = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, classes=1, decoder_channels=[16, 8, 8]).eval()
    torch.manual_seed(0)
    ours = smp_unet(SEG, encoder_depth=3, decoder_channels=[16, 8, 8]).eval()
    level1 = next(s.name for s in identity_flow(ours).skips if s.stage == 1)
    with torch.no_grad():
        feats = ref.encoder(x())
        feats[1] = torch.zeros_like(feats[1])  # features[k] is at 1/2^k resolution
        expected = ref.decoder(feats)
        with edited(ours, {level1: FillIdentity("zero")}):
            assert_close(ours.decoder(ours.encoder(x())), expected, rtol=0, atol=1e-6)
        assert not torch.allclose(ours.decoder(ours.encoder(x())), expected)


def test_smp_unet_checks_its_parameters():
    with pytest.raises(ValueError, match="encoder_depth=3"):
        smp_unet(SEG, encoder_depth=3, decoder_channels=[16, 8])


# -- checkpoints -------------------------------------------------------------------------------------------

def test_timm_checkpoint_loads_from_timm_naming_nested_or_ddp(tmp_path):
    torch.manual_seed(5)
    src = timm.create_model("resnet18", num_classes=10, **SMALL_TIMM)  # fc: reported, not loaded
    state = src.state_dict()
    for i, saved in enumerate([state, {"model": {f"module.{k}": v for k, v in state.items()}},
                               {"state_dict": state, "epoch": 3}]):
        torch.save(saved, tmp_path / f"{i}.pt")
        torch.manual_seed(0)
        model = timm_resnet(CLS, checkpoint=str(tmp_path / f"{i}.pt"), model_kwargs=SMALL_TIMM)
        assert torch.equal(model.trunk[0].weight, src.conv1.weight)
        assert torch.equal(model.trunk[4].branch.conv2.weight, src.layer1[0].conv2.weight)
        assert torch.equal(model.trunk[4].branch.bn1.running_var, src.layer1[0].bn1.running_var)
        rec = model.pretraining
        assert rec["source"] == "checkpoint" and rec["weights"] == str(tmp_path / f"{i}.pt")
        assert rec["loaded"] == len(state) - 2 and rec["missing"] == 0
        assert rec["unexpected_keys"] == ["fc.bias", "fc.weight"] and len(rec["sha256"]) == 16


def test_checkpoint_saved_from_a_bench_model_loads_back(tmp_path):
    torch.manual_seed(5)
    src = timm_resnet(SEG, model_kwargs=SMALL_TIMM)
    torch.save({"model": src.state_dict()}, tmp_path / "bench.pt")  # the trainer's checkpoint layout
    model = timm_resnet(SEG, checkpoint=str(tmp_path / "bench.pt"), model_kwargs=SMALL_TIMM).eval()
    with torch.no_grad():
        assert torch.equal(model(x(32)), src.eval()(x(32)))
    assert model.pretraining["missing"] == 0 and model.pretraining["unexpected"] == 0


@pytest.mark.parametrize("whole", [True, False])
def test_smp_checkpoint_loads_a_whole_unet_or_a_torchvision_encoder(tmp_path, whole):
    torch.manual_seed(5)
    if whole:
        src = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=[16, 8, 8])
        state, conv = src.state_dict(), src.encoder.layer2[0].conv1.weight
    else:
        src = torchvision.models.resnet18()
        state, conv = src.state_dict(), src.layer2[0].conv1.weight
    torch.save(state, tmp_path / "w.pth")
    model = smp_unet(SEG, checkpoint=str(tmp_path / "w.pth"), encoder_depth=3, decoder_channels=[16, 8, 8])
    assert torch.equal(model.encoder.layer2[0].branch.conv1.weight, conv)
    assert model.pretraining["loaded"] > 0 and model.pretraining["missing"] == 0


class NotATensor:
    pass


@pytest.mark.parametrize("case, message", [
    ("missing", "checkpoint not found"),
    ("garbage", "cannot load as a weights-only checkpoint"),
    ("pickle", "cannot load as a weights-only checkpoint"),
    ("not_tensors", "not a state dict of tensors"),
    ("no_match", "name a parameter of the model"),
    ("shape", "conv1.weight has shape"),
])
def test_bad_checkpoints_raise_one_line_naming_the_file(tmp_path, case, message):
    file = tmp_path / f"{case}.pt"
    if case == "garbage":
        file.write_bytes(b"not a checkpoint")
    elif case == "pickle":  # arbitrary objects need full unpickling: refused
        torch.save({"conv1.weight": NotATensor()}, file, pickle_module=pickle)
    elif case == "not_tensors":
        torch.save({"conv1.weight": [1, 2]}, file)
    elif case == "no_match":
        torch.save({"encoder.conv.weight": torch.zeros(1)}, file)
    elif case == "shape":
        torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7)}, file)
    with pytest.raises(BenchError, match=message) as err:
        timm_resnet(CLS, checkpoint=str(file), model_kwargs=SMALL_TIMM)
    assert str(file) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("arch, params", [("unet", {"depth": 2, "width": 4, "input_skip": True}),
                                          ("smp_unet", {"encoder": "resnet18", "encoder_depth": 3,
                                                        "decoder_channels": [8, 8, 8]})])
def test_long_skips_reach_the_classification_head(arch, params):
    """The classification head pools the LAST decoder map, after every skip has merged: each skip can move
    the class logits (a head on the bottleneck alone would make D_global = 0 by construction)."""
    from bench.registry import ARCHITECTURES

    torch.manual_seed(0)
    model = ARCHITECTURES.get(arch)(TaskInfo("classification", 3, image_size=(32, 32)), **params).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        intact = model(x)
        for skip in identity_flow(model).skips:
            with edited(model, {skip.name: FillIdentity("zero")}):
                assert not torch.allclose(model(x), intact, atol=1e-6), f"{arch}: skip {skip.name} never reaches the head"
