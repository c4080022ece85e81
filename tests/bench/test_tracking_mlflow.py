"""--log mlflow (bench.tracking): a local MLflow file store inside the run folder (<run>/logs/mlflow), one
experiment named after the study, one run per cell named by its id with the cell's config as params, curves with
one point per step and final metrics equal to results.json's; a resumed cell keeps its one run; --restart removes
the store; a missing package is one line. And --log under `executor: processes` (slow tests): the worker writes the
logs, for both backends."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

import bench
from tests.bench.test_tracking import CONFIG, HAVE_TB, run, scalars, study

HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_mlflow = pytest.mark.skipif(not HAVE_MLFLOW, reason="mlflow (the extra: pip install 'identity-bench[mlflow]') "
                                                          "is not installed")


@pytest.fixture
def reader(monkeypatch):
    """A client of a run folder's store, as a user's `mlflow ui` reads it (MLflow >= 3.x wants the opt-in)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return lambda root: MlflowClient(tracking_uri=(root / "logs" / "mlflow").as_uri())


def runs_of(client, name: str = "study") -> dict:
    exp = client.get_experiment_by_name(name)
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def curve(client, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


@needs_mlflow
def test_mlflow_a_run_per_cell_with_its_params_curves_and_results_json_metrics(tmp_path, reader, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # bench sets it only while it opens its store
    root = run(study(tmp_path), tmp_path / "logged", log="mlflow")
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    assert (root / "logs" / "mlflow").is_dir() and not (tmp_path / "mlruns").exists() and not Path("mlruns").exists()
    client = reader(root)
    results = {c["id"]: c for c in json.loads((root / "results.json").read_text())["cells"]}
    runs = runs_of(client)
    assert sorted(runs) == sorted(results) and len(runs) == 2
    for cid, r in runs.items():
        cell = results[cid]
        assert r.info.status == "FINISHED" and r.data.tags["bench.cell"] == cid
        p = r.data.params
        assert (p["task"], p["architecture"], p["variant"], p["seed"]) == ("seg", "net", "baseline", str(cell["seed"]))
        assert (p["task.name"], p["architecture.name"], p["architecture.width"], p["train.batch_size"]) == \
               ("synthetic_shapes", "unet", "4", "8") and float(p["train.epochs"]) == 1
        steps = cell["train"]["steps"]
        loss = curve(client, r, "train/loss")
        assert [s for s, _ in loss] == list(range(1, steps + 1))
        assert loss[-1][1] == pytest.approx(cell["train"]["final_loss"], abs=1e-5)
        assert [s for s, _ in curve(client, r, "train/lr")] == list(range(1, steps + 1))
        for metric, value in cell["metrics"].items():
            if isinstance(value, float):
                assert curve(client, r, f"final/{metric}") == [(steps, pytest.approx(value, abs=1e-6))]
        assert curve(client, r, "final/train_loss") == [(steps, pytest.approx(cell["train"]["final_loss"]))]
    run(study(tmp_path), root, log="mlflow")  # every cell finished: nothing is logged again
    assert len(runs_of(client)) == 2
    run(study(tmp_path), root, restart=True)  # --restart removes the store with the cells (no --log this time)
    assert not (root / "logs" / "mlflow").exists()


@needs_mlflow
def test_mlflow_a_resumed_cell_keeps_one_run_and_one_point_per_step(tmp_path, reader):
    config = study(tmp_path)
    config.write_text(CONFIG.replace("seeds: [0, 1]", "seeds: [0]").replace("epochs: 1", "epochs: 2"))
    root = run(config, tmp_path / "out", log="mlflow")
    client = reader(root)
    (cid, first), = runs_of(client).items()
    # as if killed after the last epoch's checkpoint (step 4), having logged a step past it
    client.log_metric(first.info.run_id, "train/loss", 9.0, step=5)
    (root / "cells" / f"{cid}.json").unlink()
    run(config, root, log="mlflow")
    (name, again), = runs_of(client).items()
    assert name == cid and again.info.run_id != first.info.run_id  # the earlier run is deleted, not listed
    assert [s for s, _ in curve(client, again, "train/loss")] == [1, 2, 3, 4]  # kept up to the checkpoint's step
    cell = json.loads((root / "results.json").read_text())["cells"][0]
    metric = cell["primary_metric"]
    assert curve(client, again, f"final/{metric}") == [(4, pytest.approx(cell["metrics"][metric], abs=1e-6))]


@pytest.mark.slow  # a spawned worker imports torch and bench: about 12 s each on 2 busy cores
@pytest.mark.parametrize("kind", [
    pytest.param("tensorboard", marks=pytest.mark.skipif(not HAVE_TB, reason="tensorboardX or tensorboard missing")),
    pytest.param("mlflow", marks=needs_mlflow)])
def test_log_under_processes_each_worker_writes_its_cells(tmp_path, kind, request):
    root = tmp_path / "run"
    bench.run(study(tmp_path), out=root, executor="processes", workers=1, log=kind, progress=False)
    cells = {c["id"]: c for c in json.loads((root / "results.json").read_text())["cells"]}
    assert len(cells) == 2
    for cid, cell in cells.items():
        steps = cell["train"]["steps"]
        if kind == "tensorboard":
            got = scalars(root / "logs" / cid)
            assert [s for s, _ in got["train/loss"]] == list(range(1, steps + 1))
            pids = {p.name.rsplit(".", 2)[1] for p in (root / "logs" / cid).iterdir()}
            assert pids != {str(os.getpid())}  # written by a worker, not this process
        else:
            client = request.getfixturevalue("reader")(root)
            r = runs_of(client)[cid]
            assert [s for s, _ in curve(client, r, "train/loss")] == list(range(1, steps + 1))
            metric = cell["primary_metric"]
            assert curve(client, r, f"final/{metric}") == [(steps, pytest.approx(cell["metrics"][metric], abs=1e-6))]
    if kind == "mlflow":
        assert len(runs_of(request.getfixturevalue("reader")(root))) == 2
