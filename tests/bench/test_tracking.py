"""--log tensorboard (bench.tracking): one event file per cell inside the run folder, its curves readable by
TensorBoard's own reader; results.json as without it; a missing package is one line before anything trains;
--restart removes the logs; a link named logs is refused. Also issue 28's small items: the resumed cell announced,
the progress counter and ETA, the pytest warning of `bench check`."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
from pathlib import Path

import pytest

import bench
from bench import progress as progress_mod
from bench.api import run_folder
from bench.errors import BenchError
from bench.progress import PlainProgress
from tests.helpers import one_torch_thread, without

CONFIG = """\
seeds: [0, 1]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 16, n_test: 8, image_size: 16, num_classes: 3}
architectures:
  net: {name: unet, depth: 1, width: 4}
train: {epochs: 1, batch_size: 8}
bootstrap: 100
"""
VOLATILE = {"wall_s", "images_per_s", "timings", "provenance", "computed_with", "invocations", "study_s"}
HAVE_TB = importlib.util.find_spec("tensorboardX") is not None and importlib.util.find_spec("tensorboard") is not None


def study(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(CONFIG)
    return path


def run(config: Path, out: Path, **kw) -> Path:
    with one_torch_thread():
        return run_folder(config, out=out, **kw)


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.skipif(not HAVE_TB, reason="tensorboardX (the extra) or tensorboard (its reader) is not installed")
def test_tensorboard_one_event_file_per_cell_and_results_unchanged(tmp_path):
    config = study(tmp_path)
    root = run(config, tmp_path / "logged", log="tensorboard")
    cells = sorted(p.stem for p in (root / "cells").glob("*.json"))
    assert len(cells) == 2 and sorted(p.name for p in (root / "logs").iterdir()) == cells
    for cid in cells:
        files = list((root / "logs" / cid).iterdir())
        assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
        got = scalars(root / "logs" / cid)
        cell = json.loads((root / "cells" / f"{cid}.json").read_text())
        steps = cell["train"]["steps"]
        assert [s for s, _ in got["train/loss"]] == list(range(1, steps + 1))
        assert got["train/loss"][-1][1] == pytest.approx(cell["train"]["final_loss"], abs=1e-5)
        assert len(got["train/lr"]) == steps and got["train/lr"][0][1] > 0
        metric = cell["primary_metric"]
        assert got[f"final/{metric}"] == [(steps, pytest.approx(cell["metrics"][metric], abs=1e-6))]
    plain = run(config, tmp_path / "plain")
    assert not (plain / "logs").exists()
    a, b = (json.loads((r / "results.json").read_text()) for r in (root, plain))
    assert without(a, VOLATILE) == without(b, VOLATILE)  # the choice is not part of the results (config, hash)
    run(config, root, restart=True)  # --restart cleans the logs like the cells (no --log this time)
    assert not any((root / "logs").rglob("*"))


@pytest.mark.parametrize("log, modules, package", [
    ("tensorboard", ("tensorboardX", "tensorboardX.proto.event_pb2"), r"tensorboardX"),
    ("mlflow", ("mlflow", "mlflow.entities", "mlflow.tracking"), r"mlflow-skinny \(or mlflow\)"),
])
def test_missing_package_is_one_line_naming_the_extra_before_anything_is_written(tmp_path, monkeypatch, log, modules,
                                                                                 package):
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import` of it raises ImportError
    out = tmp_path / "out"
    with pytest.raises(BenchError, match=rf"^--log {log}: needs the package {package}.*"
                                         rf"pip install 'identity-bench\[{log}\]'$"):
        run(study(tmp_path), out, log=log)
    assert not out.exists()
    from bench.cli import main

    assert main(["run", str(study(tmp_path)), "--out", str(out), "--quiet", "--log", log]) == 2
    assert not out.exists()


def test_a_link_named_logs_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / ".bench-run").write_text("{}")
    os.symlink(target, out / "logs")
    with pytest.raises(BenchError, match="logs: is a symbolic link"):
        run(study(tmp_path), out, log="tensorboard" if HAVE_TB else None)
    assert not any(target.iterdir())


def test_resumed_cell_is_announced_with_its_step(tmp_path, capfd):
    config = study(tmp_path)
    config.write_text(CONFIG.replace("seeds: [0, 1]", "seeds: [0]").replace("epochs: 1", "epochs: 2"))
    root = run(config, tmp_path / "out")
    cid = next((root / "cells").glob("*.json")).stem
    (root / "cells" / f"{cid}.json").unlink()  # as if killed after the last epoch's checkpoint
    capfd.readouterr()
    run(config, root)
    assert f"resuming {cid} from step 4" in capfd.readouterr().err  # 16 images / 8 a batch x 2 epochs


def test_plain_progress_counts_finished_cells_and_its_eta_never_rises_within_a_cell(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    with PlainProgress(total=3, done=0, stream=out) as p:
        p.start("a")
        now[0] += 10
        p.finish("a", {"primary_metric": "accuracy", "metrics": {"accuracy": 0.5}})
        etas = []
        for _ in range(4):  # cell b runs: its status lines, 3 s apart
            p.start("b")
            etas.append(out.getvalue().splitlines()[-1])
            now[0] += 3
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    assert lines[0].startswith("[0/3 done ") and all(line.startswith("[1/3 done ") for line in lines[1:])
    assert [e.split("ETA ")[1].split("]")[0] for e in etas] == ["0:00:20", "0:00:17", "0:00:14", "0:00:11"]


def test_pytest_warns_nothing_of_bench_already_imported():
    from _pytest.assertion.rewrite import AssertionRewriter

    assert AssertionRewriter.is_rewrite_disabled(bench.__doc__ or "")  # `bench check` runs pytest after import bench
