"""`bench profile`: one seed's phases in seconds and their time by kind of torch operator (bench.seed_profile)."""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict
from types import SimpleNamespace

import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.phases import observing, phase
from bench.phases import step as phase_step
from bench.seed_profile import (
    OTHER,
    OUTSIDE,
    STEP,
    TRAIN_STEPS,
    Phase,
    PhaseProfiler,
    SeedProfile,
    fold,
    kind_of,
    phase_seconds,
    phase_shares,
    render,
    without_profiler_log,
)

SMALL = """
name: small
seeds: [3, 4]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 64, n_test: 32, image_size: 16, num_classes: 3}
  cls: {name: synthetic_shapes, target: image, n_train: 64, n_test: 32, image_size: 16, num_classes: 3}
architectures:
  unet: {name: unet, depth: 1, width: 4}
train: {epochs: 3, batch_size: 32, optimizer: adamw, lr: 0.01}  # 6 steps: the profiler samples from the third
ablations:
  - {name: skip_lesion, fills: [mean]}
  - {name: skip_removal}
verdict: {dense: seg, global: cls, ablation: skip_removal, architecture: unet}
bootstrap: 100
"""


@pytest.mark.parametrize(("name", "kind"), [
    ("aten::conv2d", "convolution"), ("autograd::engine::evaluate_function: ConvolutionBackward0", "convolution"),
    ("aten::conv_transpose2d", "convolution"), ("aten::addmm", "matmul"), ("aten::linear", "matmul"),
    ("Optimizer.step#AdamW.step", "optimizer"), ("Optimizer.zero_grad#AdamW.zero_grad", "optimizer"),
    ("aten::batch_norm", "normalisation"), ("autograd::engine::evaluate_function: NativeBatchNormBackward0", "normalisation"),
    ("aten::max_pool2d", "pooling, resampling"), ("aten::upsample_bilinear2d", "pooling, resampling"),
    ("aten::cat", "copies, indexing"), ("aten::one_hot", "copies, indexing"), ("aten::to", "copies, indexing"),
    ("aten::sum", "reductions, loss"), ("aten::argmax", "reductions, loss"), ("aten::cross_entropy_loss", "reductions, loss"),
    ("aten::relu", "elementwise"), ("aten::add_", "elementwise"), ("aten::__and__", "elementwise"),
    ("autograd::engine::evaluate_function: torch::autograd::AccumulateGrad", OTHER),
])
def test_operator_kinds(name, kind):
    assert kind_of(name) == kind


def test_operators_directly_under_a_label_count_whole_and_the_rest_is_outside():
    events = [  # (name, start, end, thread), in any order
        ("aten::add_", 75, 90, 1),  # inside the optimizer step: optimizer time, not elementwise
        ("bench:train", 0, 100, 1),
        ("aten::conv2d", 10, 60, 1),
        ("aten::mkldnn_convolution", 12, 57, 1),  # inside conv2d: not counted again
        ("Optimizer.step#AdamW.step", 70, 90, 1),
        ("profiler::_record_function_exit", 99, 100, 1),  # the profiler's bookkeeping: skipped
        ("aten::relu", 200, 207, 1),  # outside every phase
        ("aten::relu", 20, 30, 2),  # another thread: not inside this thread's label
    ]
    counts = defaultdict(Counter)
    fold(events, counts)
    fold([("bench:train", 300, 400, 1), ("aten::conv2d", 300, 400, 1)], counts)  # a second cell's phase adds up
    assert phase_shares(counts) == {"train": {"convolution": 0.75, "optimizer": 0.1, OUTSIDE: pytest.approx(0.15)}}


def test_sampled_training_steps_fold_into_their_phase():
    counts = defaultdict(Counter)
    fold([("ProfilerStep#2", 0, 10, 1), ("aten::conv2d", 1, 9, 1), ("ProfilerStep#3", 10, 20, 1),
          ("aten::relu", 11, 13, 1), ("bench:train", 0, 30, 1)], counts, STEP, "train")
    assert phase_shares(counts) == {"train": {"convolution": 0.4, "elementwise": 0.1, OUTSIDE: pytest.approx(0.5)}}


def test_profile_of_a_seed_names_every_phase_and_its_shares_add_up(tmp_path, monkeypatch, capfd):
    cfg, out = tmp_path / "small.yaml", tmp_path / "profile.md"
    cfg.write_text(SMALL)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import bench.seed_profile as sp
    seen = []
    real = sp.phase_shares
    monkeypatch.setattr(sp, "phase_shares", lambda counts: seen.append(real(counts)) or seen[-1])
    assert main(["profile", str(cfg), "--out", str(out)]) == 0
    text = out.read_text()
    assert "seed 3, 4 cells" in text  # the config's first seed; baseline and no-skip U-Net on both tasks
    assert "in **fp32** (train.amp: off)" in text  # the precision is another speed: always said
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert {"train", "evaluate", "ablation:skip_lesion", "rest of the invocation"} <= set(rows)
    (shares,) = seen
    assert set(shares) == {"train", "evaluate", "ablation:skip_lesion"}  # bench.cell labels each phase
    for name, kinds in shares.items():
        assert sum(kinds.values()) == pytest.approx(1.0), name  # every microsecond of the phase, once
    assert shares["train"]["convolution"] > 0 and shares["train"]["optimizer"] > 0
    assert not list((tmp_path / "tmp").glob("bench-profile-*"))  # both temporary run folders are gone
    assert set(tmp_path.iterdir()) == {cfg, out, tmp_path / "tmp"}  # nothing else written beside the config
    assert "profiler_start" not in capfd.readouterr().err  # the profiler's native log lines are held back


def test_a_thread_count_below_one_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    assert main(["profile", str(cfg), "--threads", "0"]) == 2
    assert "--threads 0: give 1 or more" in capsys.readouterr().err


def test_only_the_profilers_own_lines_are_held_back_from_stderr(capfd):
    with without_profiler_log():
        os.write(2, b"USDT:2026-12-07 02:33:01 18805:18805 SyncActivityProfilerHandler.cpp:39] profiler_start\n"
                    b"a warning of the run\n"
                    b"ERROR:2026-12-07 02:33:01 18805:18805 DeviceProperties.cpp:56] gpuGetDeviceCount failed\n")
    assert capfd.readouterr().err == "a warning of the run\n"


def test_stderr_is_restored_and_nothing_held_back_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError), without_profiler_log():
        os.write(2, b"the plugin's own message\n")
        raise RuntimeError("a cell failed")
    os.write(2, b"after the block\n")
    assert capfd.readouterr().err == "the plugin's own message\nafter the block\n"


def test_phase_seconds_are_the_cells_own_timings():
    def cell(train, evaluate, **ablations):  # the fields of bench.results.Cell that phase_seconds reads
        return SimpleNamespace(timings={"train_s": train, "eval_s": evaluate},
                               ablations={k: SimpleNamespace(wall_s=v) for k, v in ablations.items()})
    cells = [cell(10.0, 1.0, skip_lesion=2.0), cell(20.0, 3.0)]
    assert phase_seconds(cells) == ({"train": 30.0, "evaluate": 4.0, "ablation:skip_lesion": 2.0}, 2)


def test_the_bound_weighs_each_phase_by_its_seconds_and_its_arithmetic():
    found = SeedProfile("study.yaml", 0, 1, 100.0, 8, [
        Phase("train", 80.0, {"convolution": 0.5, "matmul": 0.1, "normalisation": 0.2, OUTSIDE: 0.2}),
        Phase("evaluate", 10.0, {"convolution": 0.4, OUTSIDE: 0.6}),
        Phase("ablation:skip_lesion", 0.0, {})], "a CPU", train_steps=32)
    assert found.rest_s == 10.0
    assert found.arithmetic_share() == pytest.approx((80 * 0.6 + 10 * 0.4) / 100)
    text = render(found)
    assert "**52%** in convolutions and matrix products" in text and "at most **1.92x** faster" in text
    assert "| rest of the invocation | 10.0 | 10% |" in text
    assert "| ablation:skip_lesion | 0.0 | 0% | — |" in text  # no sample: no shares, not 0%
    assert "32 steps over the cells" in text


def test_the_head_says_the_precision_and_the_options_the_seed_ran_with():
    found = SeedProfile("configs/quickstart.yaml", 0, 1, 60.0, 8, [Phase("train", 45.0, {"convolution": 0.4})],
                        "a CPU", precision="bf16", amp="auto", sets=("train.amp=auto", "train.epochs=2"))
    head = render(found).splitlines()[0]
    assert head.startswith("One seed (seed 0, 8 cells) of `configs/quickstart.yaml` --set train.amp=auto "
                           "--set train.epochs=2, measured ")
    assert "device cpu in **bf16** (train.amp: auto), 1 torch thread(s)" in head
    assert head.endswith("more needs faster arithmetic (a GPU) or less of it.")  # bf16 is already in use


def train_like(steps: int) -> PhaseProfiler:
    """A phase ``train`` of ``steps`` steps (a small convolution each) under the profiler, as bench.train runs one."""
    observer, conv = PhaseProfiler(), torch.nn.Conv2d(3, 4, 3)
    with observing(observer), phase("train"):
        for _ in range(steps):
            conv(torch.randn(2, 3, 8, 8)).sum().backward()
            phase_step()
        torch.randn(64, 64) @ torch.randn(64, 64)  # after the last step (a checkpoint, the return): no step
    return observer


@pytest.mark.parametrize(("steps", "sampled"), [(1, 0), (2, 0), (3, 1), (6, 4), (18, TRAIN_STEPS), (40, TRAIN_STEPS)])
def test_training_is_sampled_in_whole_steps_from_the_third_and_at_most_the_window(steps, sampled):
    observer = train_like(steps)
    assert observer.steps == sampled
    kinds = observer.counts.get("train", Counter())
    assert ("matmul" in kinds) is False  # what follows the last step is never a step
    assert (kinds["convolution"] > 0) is (sampled > 0)


def test_bad_arguments_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import bench.cli as cli
    monkeypatch.setattr(cli, "profile_seed", lambda *a, **k: pytest.fail("profiled despite a bad argument"))
    cfg, target = tmp_path / "small.yaml", tmp_path / "mine.md"
    cfg.write_text(SMALL)
    target.write_text("the user's file\n")
    (tmp_path / "link.md").symlink_to(target)
    assert main(["profile", str(cfg), "--seed", "-1"]) == 2
    assert "--seed -1: give a seed of 0 or more" in capsys.readouterr().err
    assert main(["profile", str(cfg), "--out", str(tmp_path / "link.md")]) == 2
    assert "is a link" in capsys.readouterr().err and target.read_text() == "the user's file\n"


def test_a_failure_or_an_interrupt_says_nothing_was_kept(tmp_path, monkeypatch, capsys):
    import bench.seed_profile as sp
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)

    def fails(*args, **kwargs):  # what bench.api.run_folder raises when a cell fails after others finished
        raise BenchError("a cell failed; the run folder /tmp/x keeps its 3 finished cell(s): fix this and run the "
                         "same command to resume") from BenchError("a cell failed")
    monkeypatch.setattr(sp.api, "run_folder", fails)
    assert main(["profile", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "a cell failed (in the unprofiled run of bench profile; nothing was kept)" in err and "resume" not in err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(sp.api, "run_folder", interrupted)
    assert main(["profile", str(cfg)]) == 130
    assert "interrupted: nothing was kept" in capsys.readouterr().err
