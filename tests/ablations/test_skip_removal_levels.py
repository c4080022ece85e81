"""skip_removal's levels and match_params: what existed is unchanged, the listed levels alone are removed, and the
capacity-matched control is the width whose live parameters are closest to the baseline's."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from pydantic import ValidationError

from bench.ablations.skip_removal import SkipRemoval
from bench.errors import BenchError
from bench.flow import Edit, FillIdentity, IdentityFlow, identity_flow
from bench.models.resnet_cifar import cifar_resnet
from bench.models.unet import unet
from bench.plan import FLOW_INFO, Plan, live_parameters

UNET = identity_flow(unet(FLOW_INFO, depth=3, width=4, input_skip=True))  # levels -1 (input skip), 0, 1, 2
RESNET = identity_flow(cifar_resnet(FLOW_INFO, depth=8, width=4, shortcut="B"))  # stages 0, 1, 2


def before(flow: IdentityFlow, per_level: bool) -> dict[str, dict[str, Edit]]:
    """SkipRemoval.variants as it was before levels and match_params (bench 0.3.1), verbatim."""
    paths = [p for p in flow.points if p.has_identity]
    out = {"no_identity": {p.name: FillIdentity("zero") for p in paths}}
    if per_level:
        for level in sorted({p.stage for p in paths}):
            out[f"no_identity_level{level}"] = {p.name: FillIdentity("zero") for p in paths if p.stage == level}
    return out


@pytest.mark.parametrize("flow", [UNET, RESNET], ids=["unet", "resnet"])
@pytest.mark.parametrize("per_level", [False, True])
def test_existing_settings_give_the_same_variants_in_the_same_order(flow, per_level):
    now = SkipRemoval(per_level=per_level).variants(flow)
    assert list(now.items()) == list(before(flow, per_level).items())


def test_levels_adds_one_variant_without_only_those_levels_after_the_headline():
    top = SkipRemoval(levels=["top"]).variants(UNET)
    assert list(top) == ["no_identity", "no_identity_level0"]  # the all-levels headline stays first
    assert top["no_identity_level0"] == {"skips.0": FillIdentity("zero")}  # 0: the finest encoder skip
    two = SkipRemoval(levels=[1, "top", 0]).variants(UNET)
    assert list(two) == ["no_identity", "no_identity_levels0_1"]
    assert set(two["no_identity_levels0_1"]) == {"skips.0", "skips.1"}
    assert set(SkipRemoval(levels=[-1]).variants(UNET)["no_identity_level-1"]) == {"input_skip"}
    stage = SkipRemoval(levels=[2]).variants(RESNET)["no_identity_level2"]
    assert stage and {RESNET[n].stage for n in stage} == {2}
    # beside per_level, a single listed level is that level's variant once (same name, same edits)
    both = SkipRemoval(levels=["top"], per_level=True).variants(UNET)
    assert list(both) == ["no_identity", "no_identity_level0", "no_identity_level-1", "no_identity_level1",
                          "no_identity_level2"]


def test_a_level_the_architecture_lacks_or_a_word_is_refused_naming_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"levels \[5\] are not levels of this architecture \(it has \[-1, 0, 1, 2\]"):
        SkipRemoval(levels=[0, 5]).validate(UNET)
    with pytest.raises(ValidationError, match="'bottom' is not a level; write whole numbers .* or 'top'"):
        SkipRemoval(levels=["bottom"])
    with pytest.raises(BenchError, match=r"ablations.skip_removal on u: levels \[3\] .* list only those"):
        plan(tmp_path, levels=[3])


def plan(tmp_path, arch=None, **params) -> Plan:
    cfg = {"seeds": [0], "tasks": {"t": {"name": "synthetic_shapes", "target": "pixel"}},
           "architectures": {"u": arch or {"name": "unet", "depth": 3, "width": 12}},
           "ablations": [{"name": "skip_removal", **params}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    return Plan.build(tmp_path / "c.yaml")


def test_the_plan_trains_the_listed_levels_and_leaves_other_configs_as_they_were(tmp_path):
    p = plan(tmp_path, levels=["top"])
    assert [u.variant for u in p.units] == ["baseline", "no_identity", "no_identity_level0"]
    assert p.edits(p.units[2]) == {"skips.0": FillIdentity("zero")}
    assert p.headline_variant("u", "skip_removal") == "no_identity"
    assert p.arch_params == {}
    plain = plan(tmp_path)
    assert [u.id for u in plain.units] == ["t__u__baseline__s0", "t__u__no_identity__s0"]


def test_match_params_declares_the_matched_control_second_with_the_same_edits():
    v = SkipRemoval(match_params=True, levels=[0]).variants(UNET)
    assert list(v) == ["no_identity", "no_identity_matched", "no_identity_level0"]
    assert v["no_identity_matched"] == v["no_identity"]
    assert SkipRemoval(match_params=True).capacity_matched(UNET) == {"no_identity_matched": "width"}
    assert SkipRemoval().capacity_matched(UNET) == {}


@pytest.mark.parametrize("depth, width", [(3, 12), (4, 4)])
def test_live_parameters_leave_out_exactly_the_weights_a_zero_skip_cuts_off(depth, width):
    # depth 4 on the 32-pixel probe: a 2x2 bottleneck, where some corner taps get no gradient on these images
    # with or without skips (2,688 entries at width 4): they are not what the skips cut off
    model = unet(FLOW_INFO, depth=depth, width=width)
    n = sum(p.numel() for p in model.parameters())
    assert live_parameters(model, {}, "here") == n
    zero = {f"skips.{i}": FillIdentity("zero") for i in range(depth)}
    # each decoder's first 3x3 conv reads [up, skip]: its weights on the skip's w_i channels never train
    assert live_parameters(model, zero, "here") == n - sum(9 * (width * 2**i) ** 2 for i in range(depth))


def test_the_matched_width_is_the_closest_in_live_parameters(tmp_path, monkeypatch):
    from bench import plan as planning

    assert plan(tmp_path, match_params=True).arch_params == {"u": {"no_identity_matched": {"width": 13}}}

    p = plan(tmp_path)
    notes: list[str] = []
    ablations = {"skip_removal": SkipRemoval(match_params=True)}
    variants = {"u": planning.train_variants(ablations, p.flows["u"], p.path)}
    sizes = planning.matched_sizes(p.cfg, ablations, p.flows, variants, p.path, notes)
    assert sizes == {"u": {"no_identity_matched": {"width": 13}}}
    zero = SkipRemoval().variants(p.flows["u"])["no_identity"]
    target = sum(q.numel() for q in unet(FLOW_INFO, depth=3, width=12).parameters())
    gaps = {w: abs(live_parameters(unet(FLOW_INFO, depth=3, width=w), zero, "here") - target) for w in (12, 13, 14)}
    assert min(gaps, key=gaps.get) == 13
    assert notes == ["skip_removal no_identity_matched on u: width 13 (live parameters 287,167; unwidened 244,810; "
                     "the baseline at width 12: 272,026)"]
    # and the cell's model, once built through the plan, has that width
    matched = replace(p, arch_params=sizes)
    unit = replace(p.units[1], variant="no_identity_matched")
    assert sum(q.numel() for q in matched.model(unit, FLOW_INFO).parameters()) == sum(
        q.numel() for q in unet(FLOW_INFO, depth=3, width=13).parameters())
    assert sum(q.numel() for q in matched.model(p.units[0], FLOW_INFO).parameters()) == target


def test_a_plain_twin_that_widening_cannot_bring_closer_keeps_its_width(tmp_path):
    # shortcut B: the zeroed projections' weights are cut off (2,752), and width 17 would overshoot by far more
    from bench import plan as planning

    p = plan(tmp_path, {"name": "cifar_resnet", "depth": 14, "width": 16, "shortcut": "B"})
    ablations = {"skip_removal": SkipRemoval(match_params=True)}
    variants = {"u": planning.train_variants(ablations, p.flows["u"], p.path)}
    notes: list[str] = []
    assert planning.matched_sizes(p.cfg, ablations, p.flows, variants, p.path, notes) == {
        "u": {"no_identity_matched": {"width": 16}}}
    assert notes == ["skip_removal no_identity_matched on u: width 16 (live parameters 172,506; unwidened 172,506; "
                     "the baseline at width 16: 175,258)"]


def test_a_study_trains_the_matched_variant_at_its_width(tmp_path):
    """End to end: the cell builds through the plan, so the matched variant trains wider and says so."""
    import bench

    cfg = {"seeds": [0], "tasks": {"t": {"name": "synthetic_shapes", "target": "pixel", "n_train": 16, "n_test": 8,
                                         "image_size": 16}},
           "architectures": {"u": {"name": "unet", "depth": 3, "width": 12}},
           "train": {"epochs": 1, "batch_size": 8}, "bootstrap": 100,
           "ablations": [{"name": "skip_removal", "match_params": True}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = bench.run(tmp_path / "c.yaml", out=tmp_path / "run")
    cells = {c.variant: c for c in res.cells}
    width = Plan.build(tmp_path / "c.yaml").arch_params["u"]["no_identity_matched"]["width"]
    assert width == 13  # the quickstart U-Net's matched width (above)
    assert cells["no_identity_matched"].architecture_overrides == {"width": width}
    from bench.registry import TASKS

    info = TASKS.build(cfg["tasks"]["t"]).info
    assert cells["no_identity_matched"].n_params == sum(q.numel() for q in unet(info, depth=3, width=width).parameters())
    assert cells["no_identity"].architecture_overrides == {} and cells["no_identity"].n_params == cells["baseline"].n_params
    assert {c.variant for c in res.comparisons} == {"no_identity", "no_identity_matched"}
