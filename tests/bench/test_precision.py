"""bench.precision: what ``train.amp`` computes in, and that bf16 really runs where it is asked for (issue 24).

Two kinds of test. Those that hold on any CPU check the mechanism: under ``amp: bf16`` the convolutions of
training and of evaluation output bf16 (a forward hook reads their dtype), so a silently disabled autocast
fails here even on this AVX2-only machine, where bf16 is emulated. The same-recipe test (bf16 and fp32
training of the quickstart's ResNet and U-Net reach the same accuracy within the seed-to-seed spread) runs
where bf16 is native and skips with a reason elsewhere; it asserts the same dtypes, so it cannot pass with
autocast off either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import bench.precision
from bench.config import load_config
from bench.errors import BenchError
from bench.evaluate import predict_stats
from bench.metrics import primary_metric
from bench.plan import build_model
from bench.precision import bf16_cpu_flags, bf16_native, resolve_precision
from bench.provenance import provenance
from bench.registry import TASKS
from bench.train import train

CPU = torch.device("cpu")
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
PAIRS = {"resnet": "shapes_cls", "unet": "shapes_seg"}  # each architecture on the task it is headlined on


def conv_dtypes(model: torch.nn.Module, run: Callable[[], object]) -> set[torch.dtype]:
    """The dtypes every Conv2d of ``model`` output while ``run()`` ran: bf16 iff autocast was on."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def quickstart_cell(arch: str, amp: str, seed: int, overrides: list[str] = ()) -> dict:
    """One quickstart cell's training and baseline evaluation (its config, ``overrides`` applied), with
    the conv output dtypes seen in each and the trained weights."""
    cfg = load_config(QUICKSTART, [f"train.amp={amp}", *overrides])
    alias = PAIRS[arch]
    spec = cfg.tasks[alias]
    task = TASKS.build({"name": spec.name, **spec.params})
    torch.manual_seed(seed)
    model = build_model(cfg, arch, task.info)
    out: dict = {}
    out["train_dtypes"] = conv_dtypes(model, lambda: out.update(log=train(model, task, cfg.train, seed=seed,
                                                                          device=CPU)))
    ev = {}
    out["eval_dtypes"] = conv_dtypes(model, lambda: ev.update(o=predict_stats(
        model, task.test, task.info, batch_size=cfg.train.eval_batch_size, device=CPU, amp=cfg.train.amp)))
    out["metric"] = ev["o"].metrics()[primary_metric(task.info)]
    out["weights"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return out


TINY = ["tasks.shapes_cls.n_train=32", "tasks.shapes_seg.n_train=32", "tasks.shapes_cls.n_test=8",
        "tasks.shapes_seg.n_test=8", "tasks.shapes_cls.image_size=16", "tasks.shapes_seg.image_size=16",
        "train.max_steps_per_epoch=1", "train.epochs=1"]


@pytest.mark.parametrize("arch", sorted(PAIRS))
@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("off", torch.float32)])
def test_amp_sets_the_dtype_of_training_and_evaluation_on_any_cpu(arch, amp, dtype):
    """``amp: bf16`` autocasts on a CPU too (emulated where not native); the evaluation uses the training's
    precision, and the cell's train log records it. Fails when autocast is silently off (checked by making
    bench.precision.autocast return a null context: both bf16 cases fail on their conv dtypes)."""
    cell = quickstart_cell(arch, amp, seed=0, overrides=TINY)
    assert cell["train_dtypes"] == {dtype} and cell["eval_dtypes"] == {dtype}
    assert cell["log"]["precision"] == {"bf16": "bf16", "off": "fp32"}[amp]


def test_auto_is_bf16_exactly_where_it_is_native():
    cell = quickstart_cell("resnet", "auto", seed=0, overrides=TINY)
    native = bf16_native(CPU)
    assert cell["log"]["precision"] == ("bf16" if native else "fp32")
    assert cell["train_dtypes"] == {torch.bfloat16 if native else torch.float32}


@pytest.mark.parametrize("flags, expected", [({"avx2", "avx512_bf16"}, "bf16"), ({"amx_bf16", "amx_tile"}, "bf16"),
                                             ({"avx2", "avx512f", "avx512bw"}, "fp32"), (set(), "fp32")])
def test_auto_on_a_cpu_follows_its_bf16_flags(monkeypatch, flags, expected):
    """AVX-512 without its BF16 extension emulates bf16 (slower than fp32): auto stays fp32 there."""
    monkeypatch.setattr(bench.precision, "cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", CPU) == expected
    assert provenance(CPU)["bf16_native"] is (expected == "bf16")
    assert provenance(CPU)["bf16_cpu_flags"] == sorted(flags & {"amx_bf16", "avx512_bf16"})


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_follows_its_bf16_support(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: supported)
    assert resolve_precision("auto", torch.device("cuda")) == ("bf16" if supported else "fp32")


@pytest.mark.parametrize("amp, device, expected", [
    ("off", "cpu", "fp32"), ("bf16", "cpu", "bf16"), ("fp16", "cpu", "fp32"),  # no CPU fp16 autocast
    ("off", "cuda", "fp32"), ("bf16", "cuda", "bf16"), ("fp16", "cuda", "fp16"),
    ("bf16", "mps", "fp32"), ("auto", "mps", "fp32"),  # no autocast on other devices
])
def test_explicit_amp_resolves_per_device(amp, device, expected):
    assert resolve_precision(amp, torch.device(device)) == expected


def test_a_region_inside_an_uncached_one_adds_none_so_changed_weights_are_read():
    """autocast keeps a weight's bf16 copy until its outermost region ends: a cached region nested in the ablation's
    uncached one would go on reading the first copy after the weights changed (found by review: a plugin training
    with ctx.amp inside its ablation ended at loss 9.46 instead of 4e-5). bench.precision.autocast adds no region
    inside one (checked: without that guard the two outputs below are equal)."""
    lin, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with bench.precision.autocast(CPU, "bf16", cache=False):
        with bench.precision.autocast(CPU, "bf16"):
            first = lin(x)
        with torch.no_grad():
            lin.weight.add_(1.0)
        with bench.precision.autocast(CPU, "bf16"):
            second = lin(x)
    assert first.dtype == second.dtype == torch.bfloat16
    assert not torch.equal(first, second)


def test_an_unknown_amp_is_a_user_error():
    with pytest.raises(BenchError, match=r"train.amp: 'fp8' is not one of"):
        resolve_precision("fp8", CPU)


@pytest.mark.skipif(not hasattr(torch.cpu, "_is_avx512_bf16_supported"), reason="this torch has no CPU bf16 probes")
def test_the_flags_read_agree_with_torchs_own_probe_of_this_cpu():
    """Not circular: /proc/cpuinfo's flags against torch's cpuinfo probes (CPUID), so a parsing that broke on a CPU
    with AMX (the same-recipe test would then skip, and auto silently stay fp32) fails here on that CPU."""
    probed = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert bf16_native(CPU) is bool(probed), (bf16_cpu_flags(), probed)


def test_provenance_records_what_decided_auto():
    prov = provenance(CPU)
    assert prov["bf16_native"] is bf16_native(CPU) and prov["bf16_cpu_flags"] == bf16_cpu_flags()
    assert prov["bf16_native"] is bool(prov["bf16_cpu_flags"])


# The same recipe in bf16 and fp32: the quickstart's config, on 512 training images instead of 1000 (64 steps,
# not 128: emulated bf16 is ~10x slower than fp32 on the AVX2 machine that measured the spread). Measured with
# quickstart_cell on 1 thread, AMD EPYC (AVX2: bf16 emulated, same bf16 rounding as native), seed: metric
#   resnet accuracy  fp32 s0-4: 0.4975 0.4325 0.505 0.435 0.5875 (range 0.155)   bf16 s0-2: 0.555 0.4575 0.46
#   unet   mIoU      fp32 s0-4: 0.4298 0.4293 0.3488 0.2833 0.2702 (range 0.160)  bf16 s0-3: 0.4377 0.4237 0.3548 0.2809
# so bf16 vs fp32 on one seed: 0.058 / 0.025 / 0.045 (resnet), 0.008 / 0.006 / 0.006 / 0.002 (unet). The threshold is the fp32
# seed-to-seed range over seeds 0-4: a precision may move one cell as far as changing its seed does, no further.
# Re-measured where bf16 is native (2026-12-07, Intel Xeon with AMX and AVX-512-BF16, 1 thread; quickstart_cell(arch, amp,
# seed, overrides=SAME_RECIPE) for seeds 0-4 in both precisions):
#   resnet accuracy  fp32: 0.52 0.53 0.5 0.465 0.625 (range 0.160)        bf16: 0.5325 0.49 0.415 0.3975 0.6125
#   unet   mIoU      fp32: 0.4367 0.4304 0.3559 0.2837 0.2698 (range 0.167) bf16: 0.436 0.4056 0.3549 0.2843 0.2763
# bf16 vs fp32 on one seed there: at most 0.085 (resnet, seed 2; 0.0125 on seed 0, the one tested) and 0.025 (unet),
# within the AMD-measured thresholds below, which are kept (the smaller of the two machines' ranges).
SAME_RECIPE = ["tasks.shapes_cls.n_train=512", "tasks.shapes_seg.n_train=512"]
SPREAD = {"resnet": 0.155, "unet": 0.160}


@pytest.mark.skipif(not bf16_native(CPU), reason=f"bf16 is not native on this CPU (no {' or '.join(bench.precision.BF16_CPU_FLAGS)} "
                    "in its flags): emulated bf16 training takes minutes; the dtype tests above still run")
@pytest.mark.parametrize("arch", sorted(PAIRS))
def test_bf16_trains_as_well_as_fp32(arch):
    """bf16 and fp32 training of one seed reach the same accuracy within the seed-to-seed spread of fp32;
    the bf16 run's convolutions output bf16 and its weights differ from fp32's, so autocast silently off
    (bf16 run == fp32 run, within any spread) fails."""
    fp32, bf16 = (quickstart_cell(arch, amp, seed=0, overrides=SAME_RECIPE) for amp in ("off", "bf16"))
    assert bf16["train_dtypes"] == {torch.bfloat16} and bf16["eval_dtypes"] == {torch.bfloat16}
    assert any(not torch.equal(fp32["weights"][k], bf16["weights"][k]) for k in fp32["weights"])
    assert abs(bf16["metric"] - fp32["metric"]) <= SPREAD[arch], (bf16["metric"], fp32["metric"], SPREAD[arch])
