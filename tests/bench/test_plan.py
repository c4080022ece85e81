"""The plain run path: planning trains nothing, objects are built in one place and checked when
registered, RunDir alone formats run-folder paths, and a declared merge point must run. (The import
layers are import-linter's contracts in pyproject.toml: tests/bench/test_layers.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.ablations.base import Ablation
from bench.errors import BenchError
from bench.plan import Plan
from bench.registry import Registry
from bench.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]


def test_plan_lists_every_cell_without_training(monkeypatch):
    import bench.train

    monkeypatch.setattr(bench.train, "train", lambda *a, **k: pytest.fail("planning trained a model"))
    plan = Plan.build(ROOT / "configs" / "quickstart.yaml")
    assert plan.name == "quickstart"
    units, pairs, seeds = plan.units, plan.cfg.pairs(), plan.cfg.seeds
    ids = [u.id for u in units]
    assert len(ids) == len(set(ids))
    # one baseline per task x architecture x seed, + the train-time variants where they apply
    assert sum(u.variant == "baseline" for u in units) == len(pairs) * len(seeds)
    assert all(u.ablation for u in units if u.variant != "baseline")
    t, a = pairs[0]
    assert ids[0] == f"{t}__{a}__baseline__s{seeds[0]}"
    assert plan.default_dir().name.startswith("quickstart-")


def test_registry_build_is_the_one_place_objects_are_built():
    reg = Registry("architectures")

    @reg.register("toy")
    def toy(info, width: int = 2):
        """A toy."""
        return ("built", info, width)

    assert reg.build({"name": "toy", "width": 5}, "INFO") == ("built", "INFO", 5)
    with pytest.raises(BenchError, match="unknown architecture 'toi'"):
        reg.build({"name": "toi"}, "INFO")


def test_registration_checks_the_kind_of_object():
    ablations = Registry("ablations", base="bench.ablations.base:Ablation")

    class NotAnAblation:
        """Has run() but does not derive from Ablation."""

        def run(self, ctx): ...

    with pytest.raises(BenchError, match=r"ablation 'wrong' .*not a subclass of bench\.ablations\.base\.Ablation"):
        ablations.register("wrong")(NotAnAblation)

    class Fine(Ablation):
        """Derives from Ablation."""

    ablations.register("fine")(Fine)
    assert ablations.get("fine") is Fine
    archs = Registry("architectures")
    with pytest.raises(BenchError, match="architecture 'net' .*not a factory"):
        archs.add("net", 42, source="plugin test")


def test_only_rundir_formats_run_folder_paths():
    """The grep of the closing note: no module but bench/rundir.py builds a cell, checkpoint or
    bootstrap path (``"cells"``, ``checkpoints``, ``.npz``, ``.dependence_boot``, ``__s{``)."""
    pattern = re.compile(r"""/ "cells"|/ "checkpoints"|\.npz"|dependence_boot\.npy"|__s\{|\.bench-run|\.bench\.lock""")
    offenders = []
    for path in sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "models").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]):
        if path.name in ("rundir.py", "results.py", "layout.py"):  # results.py names cells (cell_id), rundir their
            # files, layout.py the run folder's own names (rundir and the writer, bench.io, share them)
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    rd = RunDir("/x")
    assert str(rd.cell_npz("a__b__c__s0")) == "/x/cells/a__b__c__s0.npz"


UNUSED_SKIP = '''
import torch
from torch import nn

from bench.flow import Merge
from bench.models.heads import make_head
from bench.registry import ARCHITECTURES


class LazyUNet(nn.Module):
    """Declares a long skip at level 0 but never calls it: the decoder ignores the encoder feature."""

    def __init__(self, task):
        super().__init__()
        self.enc, self.pool = nn.Conv2d(task.in_channels, 4, 3, padding=1), nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.skip = Merge("concat", level=0, channels=4)
        self.dec = nn.Conv2d(4, 4, 3, padding=1)
        self.head = make_head(task, 4)

    def forward(self, x):
        h = self.up(self.pool(self.enc(x)))
        return self.head(self.dec(h), x.shape[-2:])


@ARCHITECTURES.register("lazy_unet")
def lazy_unet(task):
    return LazyUNet(task)
'''


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_declared_skip_that_forward_never_runs_is_refused_naming_it(tmp_path, capsys, command):
    """Tried as a new user would: `skip_removal` on such a model would compare the baseline with itself
    (D = 0.000 [0.000, 0.000], exit 0). validate and run refuse it in one line naming the merge point,
    and run writes nothing."""
    from bench.cli import main

    name = f"lazy_unet_{command}"  # each registers its own plugin name in this process
    (tmp_path / f"{name}.py").write_text(UNUSED_SKIP.replace("lazy_unet", name))
    config = tmp_path / "study.yaml"
    config.write_text(f"plugins: [{name}.py]\n"
                      "tasks: {seg: {name: synthetic_shapes, target: pixel, n_train: 8, n_test: 4, image_size: 16}}\n"
                      f"architectures: {{net: {{name: {name}}}}}\nablations: [{{name: skip_removal}}]\n")
    out = tmp_path / "run"
    assert main([command, str(config), *(["--out", str(out)] if command == "run" else [])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "architectures.net: declares merge point 'skip'" in err, err
    assert "never runs it" in err and not out.exists()


def test_a_merge_used_only_at_some_resolutions_counts_as_run():
    """A U-Net may use a level's skip only from some input size on: a merge that runs at any accepted size is
    exercised; only one that no accepted size runs is refused."""
    import torch

    from bench.flow import Merge, identity_flow
    from bench.plan import unexercised_merges

    class SizeDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.always, self.large = Merge("add", level=0), Merge("add", level=1)

        def forward(self, x):
            h = self.always(x, x)
            return self.large(h, h) if x.shape[-1] >= 64 else h

    model = SizeDependent()
    flow = identity_flow(model)
    sizes = [torch.zeros(1, 3, s, s) for s in (32, 64)]
    assert unexercised_merges(model, flow, sizes[:1]) == ["large"]
    assert unexercised_merges(model, flow, sizes) == []
