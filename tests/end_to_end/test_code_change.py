"""A cell is a function of its config and of its code: editing a plugin between two runs of the same command
retrains the cells that plugin shaped (bench.codehash, bench.driver.stale), with one warning line each.

Without the rule, the second run said "resuming: 1/1 cells already finished" and kept the old model's numbers.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from bench.cli import main
from bench.codehash import component_hash
from bench.driver import changed_code
from tests.end_to_end.test_failure_corpus import fresh_registries
from tests.helpers import one_torch_thread, without

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "residual_unet.py"
STUDY = """
name: code-change
seeds: [0]
plugins: [residual_unet.py]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 16, n_test: 8, image_size: 16, num_classes: 3}
architectures:
  net: {name: residual_unet, depth: 1, width: 4, blocks: 1}
train: {epochs: 1, batch_size: 8}
ablations:
  - {name: block_lesion}
bootstrap: 100
"""
VOLATILE = {"wall_s", "images_per_s", "timings", "provenance", "computed_with", "invocations"}


def run(config: Path, out: Path) -> int:
    with one_torch_thread():
        return main(["run", str(config), "--out", str(out), "--quiet"])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(autouse=True)
def _registries():
    """Each test imports its own copy of the plugin file: its registration ends with the test."""
    with fresh_registries():
        yield


@pytest.fixture
def study(tmp_path) -> Path:
    (tmp_path / "residual_unet.py").write_text(EXAMPLE.read_text())
    config = tmp_path / "study.yaml"
    config.write_text(STUDY)
    return config


def test_editing_the_plugin_retrains_its_cells_and_equals_a_fresh_run(study, capsys):
    out = study.parent / "run"
    assert run(study, out) == 0
    first = results(out)
    assert first["invocations"][-1]["cells_computed"] == 1
    assert first["cells"][0]["code"]["architecture:net"].startswith("sha256:")
    assert first["code"] == first["cells"][0]["code"]

    assert run(study, out) == 0  # unchanged code: nothing retrained
    assert results(out)["invocations"][-1]["cells_computed"] == 0
    capsys.readouterr()

    plugin = study.parent / "residual_unet.py"
    plugin.write_text(plugin.read_text().replace("post=nn.ReLU()", "post=nn.GELU()"))  # the user's fix
    assert run(study, out) == 0
    err = capsys.readouterr().err
    assert "the code of architecture:net changed since the cell was computed" in err
    edited = results(out)
    assert edited["invocations"][-1]["cells_computed"] == 1
    assert edited["code"]["architecture:net"] != first["code"]["architecture:net"]
    assert edited["code"]["task:seg"] == first["code"]["task:seg"]
    assert edited["cells"][0]["metrics"] != first["cells"][0]["metrics"]  # the old numbers are gone

    fresh = study.parent / "fresh"
    assert run(study, fresh) == 0
    assert without(results(fresh)["cells"], VOLATILE) == without(edited["cells"], VOLATILE)


def test_the_hash_covers_the_modules_a_plugin_imports_from_beside_it_and_nothing_else(tmp_path, monkeypatch):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "parts_hc.py").write_text("WIDTH = 4\n")
    (folder / "unrelated_hc.py").write_text("X = 1\n")
    (folder / "net_hc.py").write_text(textwrap.dedent("""
        from parts_hc import WIDTH

        def factory(info):
            return WIDTH
    """))
    monkeypatch.syspath_prepend(str(folder))
    for name in ("net_hc", "parts_hc", "unrelated_hc"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import net_hc  # noqa: PLC0415 - imported from the folder just written
    import unrelated_hc  # noqa: F401, PLC0415

    before = component_hash(net_hc.factory)
    (folder / "unrelated_hc.py").write_text("X = 2\n")
    assert component_hash(net_hc.factory) == before  # not imported by the plugin
    (folder / "parts_hc.py").write_text("WIDTH = 8\n")
    assert component_hash(net_hc.factory) != before


def test_installed_code_is_named_by_its_distribution_and_version():
    from importlib.metadata import version  # noqa: PLC0415

    import timm  # noqa: PLC0415

    assert component_hash(timm.create_model) == f"timm=={version('timm')}"


def test_cells_that_recorded_no_code_are_kept_and_a_changed_or_missing_component_is_named():
    now = {"architecture:net": "sha256:b", "task:seg": "sha256:t"}
    assert changed_code({}, now) == []  # before bench 0.3.1: nothing says the code changed
    assert changed_code({"architecture:net": "sha256:a", "task:seg": "sha256:t"}, now) == ["architecture:net"]
    assert changed_code({"architecture:net": "sha256:b"}, now) == ["task:seg"]
    assert changed_code(dict(now), now) == []


def test_a_folder_never_mixes_precisions_when_amp_auto_moves_to_a_machine_with_native_bf16(study, capsys,
                                                                                       monkeypatch):
    """``amp: auto`` is fp32 on an AVX2-only CPU and bf16 on a CPU with AMX: the same config resumed on the
    other machine retrains its cells in that machine's precision rather than mixing the two
    (docs/reproducibility.md). Both machines are simulated through the CPU flags, so this holds on either."""
    import bench.precision  # noqa: PLC0415

    out = study.parent / "run"
    monkeypatch.setattr(bench.precision, "bf16_cpu_flags", lambda: [])  # as on an AVX2-only AMD EPYC
    with one_torch_thread():
        assert main(["run", str(study), "--out", str(out), "--quiet", "--set", "train.amp=auto"]) == 0
    assert results(out)["cells"][0]["train"]["precision"] == "fp32"
    capsys.readouterr()
    monkeypatch.setattr(bench.precision, "bf16_cpu_flags", lambda: ["amx_bf16"])  # as on an Intel Xeon with AMX
    with one_torch_thread():
        assert main(["run", str(study), "--out", str(out), "--quiet", "--set", "train.amp=auto"]) == 0
    assert "computed in fp32, and train.amp 'auto' is bf16 on this device" in capsys.readouterr().err
    moved = results(out)
    assert moved["invocations"][-1]["cells_computed"] == 1 and moved["cells"][0]["train"]["precision"] == "bf16"
