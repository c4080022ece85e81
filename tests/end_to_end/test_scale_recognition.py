"""``verdict.scale: recognition`` end to end: cells compute test-time D on recognition, the analysis reads
train-time D on it, conditioning checks its margin, the sensitivity row re-reads the headline on all classes.

Each number is checked against the identity it must satisfy, recomputed here from the cells' own per-example
statistics: D = 1 − (m_ablated − m_chance)/(m_full − m_chance) with m the recognition balanced accuracy."""

from __future__ import annotations

import numpy as np
import pytest

import bench
from bench.config import load_config
from bench.data import TaskInfo
from bench.errors import BenchError
from bench.metrics import Outcome

CONFIG = """
name: recognition_scale
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 160, n_test: 40, image_size: 16}
  cls: {name: synthetic_shapes, target: image, n_train: 160, n_test: 40, image_size: 16}
architectures:
  unet: {name: unet, depth: 2, width: 8}
train: {epochs: 4, batch_size: 16, optimizer: adamw, lr: 0.01, class_weights: balanced}
ablations:
  - {name: skip_removal}
  - {name: skip_lesion, fills: [zero, mean]}
verdict: {dense: seg, global: cls, ablation: skip_removal, architecture: unet, scale: SCALE}
bootstrap: 100
"""
SEG = TaskInfo("segmentation", 5, background_index=0)  # synthetic_shapes: background + 4 shapes
CLS = TaskInfo("classification", 4)


def d_of(ablated: Outcome, full: Outcome, metric: str, chance: str) -> float:
    return 1 - (ablated.value(metric) - full.value(chance)) / (full.value(metric) - full.value(chance))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recognition")
    config = folder / "study.yaml"
    config.write_text(CONFIG.replace("SCALE", "recognition"))
    res = bench.run(config, out=folder / "run")
    return res, folder / "run"


def stats_of(folder, cid: str, info: TaskInfo) -> Outcome:
    with np.load(folder / "cells" / f"{cid}.npz") as z:
        return Outcome(z["stats"], info)


def test_the_study_records_its_scale(run):
    res, folder = run
    assert res.scale == "recognition_balanced_accuracy" and res.verdict.scale == "recognition"
    assert res.config["verdict"]["scale"] == "recognition"
    assert "recognition" in (folder / "report.md").read_text()


def test_train_time_d_is_recognition_d_of_the_stored_statistics(run):
    res, folder = run
    checked = 0
    for c in res.comparisons:
        info = SEG if c.task == "seg" else CLS
        full = stats_of(folder, f"{c.task}__unet__baseline__s0", info)
        abl = stats_of(folder, f"{c.task}__unet__{c.variant}__s0", info)
        want = d_of(abl, full, "recognition_balanced_accuracy", "recognition_chance")
        assert c.dependence.estimate == pytest.approx(want, abs=1e-6)
        assert c.score_full == pytest.approx(full.value("recognition_balanced_accuracy"), abs=1e-6)
        checked += 1
    assert checked == 2


def test_test_time_records_are_on_recognition(run):
    res, folder = run
    base = next(c for c in res.cells if c.id == "seg__unet__baseline__s0")
    stored = stats_of(folder, base.id, SEG)
    full, chance = stored.value("recognition_balanced_accuracy"), stored.value("recognition_chance")
    records = base.ablations["skip_lesion"].records
    assert records
    for rec in records:
        assert rec["score"] == pytest.approx(rec["metrics"]["recognition_balanced_accuracy"], abs=1e-6)
        if rec["dependence"] is not None:
            assert rec["dependence"] == pytest.approx(1 - (rec["score"] - chance) / (full - chance), rel=1e-4, abs=1e-5)
    # the object-class prediction leaves the background logit out: recognition is not all-class balanced accuracy
    assert any(abs(r["score"] - r["metrics"]["balanced_accuracy"]) > 1e-3 for r in records)


def test_conditioning_checks_the_recognition_margin_and_the_sensitivity_reads_all_classes(run):
    res, folder = run
    head = res.verdict.headline
    assert head.conditioning.scale == "recognition" and head.conditioning.dense_object_margin is None
    full = stats_of(folder, "seg__unet__baseline__s0", SEG)
    margin = full.value("recognition_balanced_accuracy") - full.value("recognition_chance")
    assert head.conditioning.dense_margin.per_seed["0"] == pytest.approx(margin, abs=1e-6)
    sens = res.verdict.sensitivity
    assert sens.scale == "all classes" and sens.tasks == ["seg", "cls"]
    abl = stats_of(folder, "seg__unet__no_identity__s0", SEG)
    assert sens.dense.per_seed["0"] == pytest.approx(d_of(abl, full, "balanced_accuracy", "balanced_chance"), abs=1e-6)


def test_pairs_of_one_study_share_one_scale(tmp_path):
    two = CONFIG.replace("verdict: {dense: seg, global: cls, ablation: skip_removal, architecture: unet, scale: SCALE}",
                         "verdict:\n  - {label: a, dense: seg, global: cls, scale: recognition}\n"
                         "  - {label: b, dense: seg, global: cls, scale: balanced_accuracy}")
    path = tmp_path / "two.yaml"
    path.write_text(two)
    with pytest.raises(BenchError, match=r"two.yaml: verdict: the pairs' scale differ .*give every pair the same scale"):
        load_config(path)


def test_a_plan_without_the_key_reads_all_classes(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(CONFIG.replace(", scale: SCALE", ""))
    assert load_config(path).scale == "balanced_accuracy"


def test_localisation_is_reported_beside_the_call(run):
    """Recognition leaves out whether the ablated dense model still finds the objects: the verdict reads that
    separately, D on object vs background (chance 1/2), from the same cells."""
    res, folder = run
    loc = res.verdict.localisation
    assert loc is not None and loc.task == "seg"
    full = stats_of(folder, "seg__unet__baseline__s0", SEG)
    abl = stats_of(folder, "seg__unet__no_identity__s0", SEG)
    want = d_of(abl, full, "localisation_balanced_accuracy", "localisation_chance")
    assert loc.dependence.per_seed["0"] == pytest.approx(want, abs=1e-6)
    assert "Localisation, not the call" in (folder / "report.md").read_text()
