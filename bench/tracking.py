"""Optional experiment tracking (``bench run --log tensorboard|mlflow``): each cell's training curves and final
metrics, offline, inside the run folder.

- ``tensorboard``: TensorBoard event files, ``<run>/logs/<cell id>/events.out.tfevents.*``; view with
  ``tensorboard --logdir <run>/logs``. The records are TensorBoard's (TFRecord framing of ``Event`` protos),
  encoded with the protos of tensorboardX, the extra ``tensorboard``.
- ``mlflow``: a local MLflow file store, ``<run>/logs/mlflow`` (``MlflowLog``): one experiment named
  after the study, one MLflow run per cell (named by its id) with the cell's config as params; the extra
  ``mlflow`` (mlflow-skinny).

Both backends are one interface (``Tracker``): ``scalars(step, values)`` buffered and written every few seconds,
``final(step, cell)`` and ``close(ok)``. Offline and per cell: the process that computes a cell (the driver with
``local``, a worker otherwise) writes that cell's own files, so no writer crosses processes (the MLflow experiment
is created by the driver before any cell starts, ``prepare``). What is logged never feeds back into training or
results: the choice is not part of the config (results.json and its hash are the same with or without it).

Scalars: ``train/loss`` and ``train/lr`` at every step, ``final/<metric>`` (the baseline's test metrics) and
``final/train_loss`` at the last step. A cell trained from scratch replaces what an earlier attempt logged; a cell
resumed from its checkpoint at step k continues its curves from step k + 1 (TensorBoard: in a new event file
beside the earlier one; MLflow: the cell's one run is replaced by a run that keeps the earlier points up to step k
and continues them; the replaced run is marked deleted, hidden from searches and the UI until ``mlflow gc``).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError
from bench.io import DiskFull, is_disk_full, make_folder, parent_folder
from bench.layout import LOG_EVENTS as EVENTS
from bench.rundir import RunDir

if TYPE_CHECKING:
    from bench.plan import Plan, Unit

KINDS = ("tensorboard", "mlflow")
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow-skinny (or mlflow)"}


def require(kind: str | None) -> None:
    """Before anything trains: ``kind`` is known and its package importable, else one line naming the extra."""
    if kind is None:
        return
    if kind not in KINDS:
        raise BenchError(f"--log {kind}: not supported; give one of {', '.join(KINDS)}")
    try:
        if kind == "tensorboard":
            _protos()
        else:
            _mlflow()
    except ImportError:
        raise BenchError(f"--log {kind}: needs the package {PACKAGES[kind]}, which is not installed here; install "
                         f"the extra: pip install 'identity-bench[{kind}]'") from None


def prepare(kind: str | None, run: str | Path, study: str) -> None:
    """In the driver, before any cell starts: what the cells' logs share (MLflow: the store and the study's
    experiment, created once here so that workers never race to create it)."""
    if kind == "mlflow":
        _experiment(_client(run), study)


class Tracker:
    """One cell's log: scalars buffered as it trains, written every few seconds and when closed."""

    FLUSH_S = 2.0

    def __init__(self) -> None:
        self._pending: list[tuple[int, float, dict[str, float]]] = []
        self._flushed = time.monotonic()
        self._closed = False

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if values:
            self._pending.append((int(step), time.time(), values))
        if time.monotonic() - self._flushed > self.FLUSH_S:
            self.flush()

    def final(self, step: int, cell: dict[str, Any]) -> None:
        """The cell's final metrics beside its curves, at its last step."""
        self.scalars(step, {**numbers(cell.get("metrics", {}), "final/"),
                            **numbers({"train_loss": cell.get("train", {}).get("final_loss")}, "final/")})

    def flush(self) -> None:
        pending, self._pending, self._flushed = self._pending, [], time.monotonic()
        if pending:
            self._write(pending)

    def close(self, ok: bool = True) -> None:
        """Flush and finish; ``ok`` False: the cell's training failed (MLflow marks its run FAILED)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._end(ok)

    def _write(self, pending: list[tuple[int, float, dict[str, float]]]) -> None:
        raise NotImplementedError

    def _end(self, ok: bool) -> None:
        raise NotImplementedError


def _protos() -> tuple[Any, Any, Any]:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.record_writer import masked_crc32c

    return Event, Summary, masked_crc32c


class EventLog(Tracker):
    """One cell's TensorBoard event file, written as it trains."""

    def __init__(self, run: str | Path, folder: Path, fresh: bool):
        super().__init__()
        self.Event, self.Summary, self.crc = _protos()
        self.run, self.folder = Path(os.path.abspath(run)), Path(os.path.abspath(folder))
        self.path = self.folder / f"{EVENTS}{int(time.time())}.{socket.gethostname()}.{os.getpid()}.bench"
        with parent_folder(self.path, self.run) as dfd:  # inside the run folder, no link followed on the way
            if fresh:  # a cell trained from scratch: an earlier attempt's curves would overlap its own
                for name in os.listdir(dfd):
                    if name.startswith(EVENTS) and stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                        os.unlink(name, dir_fd=dfd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_APPEND
            try:
                self.fd = os.open(self.path.name, flags, 0o644, dir_fd=dfd)
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFull(self.path) from exc
                raise
        self._emit([self._record(self.Event(wall_time=time.time(), file_version="brain.Event:2"))])

    def _write(self, pending: list[tuple[int, float, dict[str, float]]]) -> None:
        records = []
        for step, wall, values in pending:
            summary = self.Summary(value=[self.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
            records.append(self._record(self.Event(wall_time=wall, step=step, summary=summary)))
        self._emit(records)

    def _record(self, event: Any) -> bytes:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        return header + struct.pack("<I", self.crc(header)) + data + struct.pack("<I", self.crc(data))

    def _emit(self, records: list[bytes]) -> None:
        view = memoryview(b"".join(records))
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path) from exc
            raise

    def _end(self, ok: bool) -> None:
        os.close(self.fd)


# -- MLflow --------------------------------------------------------------------------------------------------------
CELL_TAG = "bench.cell"  # the tag that finds a cell's run (its name is the cell id too)
ALLOW = "MLFLOW_ALLOW_FILE_STORE"  # MLflow >= 3.x refuses a file store without it (its "maintenance mode")


def _mlflow() -> tuple[Any, Any, Any]:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    return MlflowClient, Metric, Param


def mlflow_store(run: str | Path) -> Path:
    """``--log mlflow``'s file store: ``<run>/logs/mlflow`` (view: ``mlflow ui --backend-store-uri`` it)."""
    return RunDir(os.path.abspath(run)).mlflow_store


def _client(run: str | Path) -> Any:
    """A client of the run folder's own file store, by its ``file:`` URI: never the user's tracking URI, and no
    environment change outlives the call. MLflow >= 3.x refuses a file store unless MLFLOW_ALLOW_FILE_STORE is
    true: it is set while the client builds the store (MLflow keeps that store per URI for the process), then
    restored. A file store, not SQLite: every cell's run is its own folder, so workers on a cluster's shared
    filesystem never share a database file and its locks."""
    store = mlflow_store(run)
    make_folder(store.parent, run=run)  # <run>/logs, no link followed on the way; MLflow creates the store
    mode = _lmode(store)
    if mode is not None and not stat.S_ISDIR(mode):
        raise BenchError(f"{store}: is not a folder (a link or a file); bench writes its MLflow store only there")
    saved = os.environ.get(ALLOW)
    os.environ[ALLOW] = "true"
    try:
        return _mlflow()[0](tracking_uri=store.as_uri())
    finally:
        if saved is None:
            os.environ.pop(ALLOW, None)
        else:
            os.environ[ALLOW] = saved


def _lmode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def _experiment(client: Any, study: str) -> str:
    """The study's experiment in the store (created, or restored if deleted), by its name."""
    found = client.get_experiment_by_name(study)
    if found is None:
        return str(client.create_experiment(study))
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


class MlflowLog(Tracker):
    """One cell's MLflow run, named by its id, with the cell's config as params. A cell's earlier runs (an
    attempt cut off) are deleted (MLflow's lifecycle stage: hidden, on disk until ``mlflow gc``): trained from
    scratch, its run starts empty; resumed at step k, the new run first copies the latest earlier run's curves up
    to step k, so each curve has one point per step."""

    PARAMS, METRICS = 100, 1000  # MLflow's limits of one log_batch

    def __init__(self, run: str | Path, study: str, cell: str, params: dict[str, str], resumed_at: int | None):
        super().__init__()
        self.client = _client(run)
        _, self.Metric, Param = _mlflow()
        experiment = _experiment(self.client, study)
        earlier = self.client.search_runs([experiment], filter_string=f"tags.`{CELL_TAG}` = '{cell}'",
                                          order_by=["attributes.start_time DESC"])
        kept = []
        if resumed_at is not None and earlier:  # the latest attempt's curves up to the checkpoint's step
            last = earlier[0].info.run_id
            kept = [m for key in earlier[0].data.metrics if not key.startswith("final/")  # logged again at the end
                    for m in self.client.get_metric_history(last, key) if m.step <= resumed_at]
        for old in earlier:
            self.client.delete_run(old.info.run_id)
        self.run_id = self.client.create_run(experiment, run_name=cell, tags={CELL_TAG: cell}).info.run_id
        values = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(values), self.PARAMS):
            self.client.log_batch(self.run_id, params=values[i:i + self.PARAMS])
        self._log(kept)

    def _write(self, pending: list[tuple[int, float, dict[str, float]]]) -> None:
        self._log([self.Metric(key, float(v), int(wall * 1000), step)
                   for step, wall, values in pending for key, v in values.items()])

    def _log(self, metrics: list[Any]) -> None:
        for i in range(0, len(metrics), self.METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + self.METRICS])

    def _end(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def open_log(kind: str | None, run: str | Path, cell: str, *, fresh: bool, step: int = 0, study: str = "",
             params: dict[str, str] | None = None) -> Tracker | None:
    """The cell's log for ``--log kind`` (None: no tracking). ``fresh``: trained from scratch; else resumed from
    its checkpoint at ``step``. ``study`` names the MLflow experiment, ``params`` the run's params."""
    if kind is None:
        return None
    require(kind)
    if kind == "tensorboard":
        return EventLog(run, RunDir(run).cell_log(cell), fresh)
    return MlflowLog(run, study, cell, params or {}, None if fresh else step)


def numbers(values: dict[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of ``values`` as scalars named ``prefix<key>``."""
    return {f"{prefix}{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}


def cell_params(plan: Plan, unit: Unit) -> dict[str, str]:
    """What a cell is, as flat ``key: text`` params: its task, architecture (aliases, plugins and their
    params, the variant's overrides), variant, seed and training recipe."""
    cfg = plan.cfg
    partner = plan.partner(unit)
    out: dict[str, Any] = {"study": plan.name, "cell": unit.id, "task": unit.task, "architecture": unit.arch,
                           "variant": unit.variant, "ablation": unit.ablation, "seed": unit.seed,
                           **({"partner_task": partner} if partner is not None else {})}
    spec = cfg.tasks[unit.task]
    out.update(flat("task", {"name": spec.name, **spec.params}))
    spec = cfg.architectures[unit.arch]
    out.update(flat("architecture", {"name": spec.name, **spec.params}))
    out.update(flat("architecture.overrides", plan.arch_params.get(unit.arch, {}).get(unit.variant, {})))
    out.update(flat("train", cfg.train.model_dump(mode="json")))
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in out.items()}


def flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"prefix.a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict) and v:
            out.update(flat(f"{prefix}.{k}", v))
        else:
            out[f"{prefix}.{k}"] = v
    return out
