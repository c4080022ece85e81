"""skip_scale: its ends are the ablations it lies between (beta = 0 is skip_lesion's zero fill, beta = 1 the
intact model, exactly), and its summary is the normalised area of its curve, replicates combined alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from bench.ablations.base import AblationContext
from bench.ablations.skip_lesion import SkipLesion
from bench.ablations.skip_scale import SkipScale, area
from bench.config import TrainConfig
from bench.data import Task, TaskInfo, TensorSplit
from bench.evaluate import predict_stats
from bench.flow import FillIdentity, ScaleIdentity, identity_flow
from bench.metrics import bootstrap_weights, chance_outcome
from bench.models.unet import unet
from bench.registry import ABLATIONS
from bench.train import train

CPU = torch.device("cpu")
BETAS = [1.0, 0.0, 0.5, 0.83, 0.25]  # unsorted on purpose: the area must not depend on the listed order


def colour_task(n_train=256, n_test=60, size=8) -> Task:
    """Each pixel's class is its brightest colour channel: learnt in a few epochs by a tiny U-Net."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        x = torch.rand(n, 3, size, size, generator=g) * 255
        return TensorSplit(x.round().to(torch.uint8), x.argmax(1), (0.5,) * 3, (0.29,) * 3, pad=0, flip=False)

    return Task(TaskInfo("segmentation", 3, 3, (size, size)), split(n_train), split(n_test))


def context(model, task) -> AblationContext:
    base = predict_stats(model, task.test, task.info, batch_size=500, device=CPU)
    chance = chance_outcome(task.train.targets(), task.test.targets(), task.info)
    return AblationContext(model, identity_flow(model), task, CPU, 0, base, chance,
                           bootstrap_weights(base.n, 64, 0))


@pytest.fixture(scope="module")
def ctx():
    task = colour_task()
    torch.manual_seed(0)
    model = unet(task.info, depth=2, width=4)
    train(model, task, TrainConfig(epochs=6, batch_size=32, optimizer="adamw", lr=1e-2, warmup_epochs=0.5),
          seed=0, device=CPU)
    out = context(model.eval(), task)
    assert out.baseline.score > out.baseline.chance_score + 0.1  # trained: D is defined and means something
    return out


def test_is_registered_as_an_identity_dependence():
    assert ABLATIONS.get("skip_scale") is SkipScale
    assert SkipScale.declaration()["family"] == "identity"


def test_beta_zero_is_the_zero_fill_and_beta_one_the_intact_model_exactly(ctx):
    by_level = {level: pts for level, beta, pts in SkipScale(betas=BETAS).settings(ctx.flow) if beta == 0}
    assert set(by_level) == {"0", "1", "all"}
    intact = ctx.evaluate({}).stats
    for level, pts in by_level.items():
        zero = ctx.evaluate({p.name: FillIdentity("zero") for p in pts}).stats
        assert np.array_equal(ctx.evaluate({p.name: ScaleIdentity(0.0) for p in pts}).stats, zero), level
        assert not np.array_equal(zero, intact), level  # the comparison has something to find
        assert np.array_equal(ctx.evaluate({p.name: ScaleIdentity(1.0) for p in pts}).stats, intact), level
    # and through the ablations' own runs: the same records as skip_lesion's zero fill, level by level
    scaled = SkipScale(betas=BETAS).run(ctx).records
    lesion = {r["key"]["level"]: r for r in SkipLesion(fills=["zero"], headline_fill="zero").run(ctx).records}
    for r in scaled:
        if r["key"]["beta"] == 0:
            same = lesion[r["key"]["level"]]
            assert (r["metrics"], r["score"], r["dependence"]) == (same["metrics"], same["score"], same["dependence"])
            assert r["key"]["points"] == same["key"]["points"]
        if r["key"]["beta"] == 1:
            assert r["dependence"] == 0 and r["metrics"] == ctx.baseline.metrics()


def test_a_record_per_level_and_beta_and_a_summary_that_is_the_curve_s_area(ctx):
    out = SkipScale(betas=BETAS).run(ctx)
    assert [(r["key"]["level"], r["key"]["beta"]) for r in out.records] == [
        (level, b) for level in ("0", "1", "all") for b in BETAS]
    curve = out.summary["curve"]
    assert curve == [r["dependence"] for r in out.records if r["key"]["level"] == "all"]
    # the area, computed here independently: numpy's trapezoid over 1 - beta, sorted, over the span
    x = 1 - np.array(BETAS)
    order = np.argsort(x)
    assert out.summary["dependence"] == pytest.approx(np.trapezoid(np.array(curve)[order], x[order]), abs=1e-6)
    assert min(curve) <= out.summary["dependence"] <= max(curve)
    assert 0 < out.summary["dependence"] < curve[BETAS.index(0.0)]  # zeroing costs most; the area is below it
    for level in ("0", "1"):
        level_curve = [r["dependence"] for r in out.records if r["key"]["level"] == level]
        assert out.summary["dependence_by_level"][level] == pytest.approx(
            np.trapezoid(np.array(level_curve)[order], x[order]), abs=1e-6)
    # replicates: the same area of each replicate's curve, shaped like every other ablation's
    boots = np.stack([ctx.dependence_boot(ctx.evaluate({p.name: ScaleIdentity(b) for p in ctx.flow.skips}))
                      for b in BETAS])
    assert out.summary_boot.shape == (64,)
    assert out.summary_boot.shape == SkipLesion(fills=["zero"], headline_fill="zero").run(ctx).summary_boot.shape
    assert np.allclose(out.summary_boot, np.trapezoid(boots[order], x[order], axis=0), atol=1e-12)
    assert np.nanmin(out.summary_boot) >= np.nanmin(boots) and np.nanmax(out.summary_boot) <= np.nanmax(boots)


def test_area_weights_are_a_normalised_trapezoid():
    assert area([0.0, 0.5, 1.0], np.full(3, 0.7)) == pytest.approx(0.7)  # D everywhere: area D
    assert area([0.0, 0.25, 0.5, 1.0], np.array([1.0, 0.75, 0.5, 0.0])) == pytest.approx(0.5)  # D = 1 - beta
    assert area([0.5, 1.0], np.array([0.4, 0.0])) == pytest.approx(0.2)  # over the grid's span, not [0, 1]
    assert area([1.0, 0.0], np.array([[0.0, 0.0], [1.0, np.nan]])).tolist()[1] != area([1.0, 0.0], np.zeros(2))


@pytest.mark.parametrize("betas, message", [([0.0, 1.5], "outside"), ([0.5, 0.5, 1.0], "repeat"), ([0.5], "at least 2")])
def test_a_bad_grid_is_refused_naming_it(betas, message):
    with pytest.raises(ValidationError, match=message):
        SkipScale(betas=betas)


def test_the_report_draws_the_curve_and_tabulates_the_area(tmp_path):
    import yaml

    import bench

    cfg = {"seeds": [0, 1], "tasks": {"t": {"name": "synthetic_shapes", "target": "pixel", "n_train": 16, "n_test": 8,
                                            "image_size": 16}},
           "architectures": {"u": {"name": "unet", "depth": 2, "width": 4}},
           "train": {"epochs": 1, "batch_size": 8}, "bootstrap": 100,
           "ablations": [{"name": "skip_scale", "betas": [0.0, 0.5, 1.0]}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = bench.run(tmp_path / "c.yaml", out=tmp_path / "run")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "skip_scale — skip strength as a curve" in report
    assert (tmp_path / "run" / "skip_scale.png").stat().st_size > 0
    areas = [c.ablations["skip_scale"].summary["dependence"] for c in res.cells]
    row = next(line for line in report.splitlines() if line.startswith("| t | u | 2 |"))
    assert row.rstrip(" |").endswith(f"{np.mean(areas):.3f}")  # the table's area is the seeds' mean summary
