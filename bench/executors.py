"""Where cells run: in this process, a local pool, a Ray cluster or Slurm — all one cell function.

Every executor calls ``compute_cell`` (in a worker) or ``run_cell`` (``local``, in the driver): the
worker writes its cell atomically, so a worker that dies loses only its cell and the same command
resumes. A cell that raises is reported with its error; the others go on. ``Events`` is what the
driver knows across workers (done / running / failed), shown on the progress bar.
"""

from __future__ import annotations

import os
import queue
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from bench.data import pinned_for
from bench.errors import BenchError
from bench.io import write_json
from bench.plan import ResolvedStudy, Unit
from bench.progress import StudyProgress
from bench.registry import load_plugin
from bench.train import deterministic

if TYPE_CHECKING:
    from bench.config import ExecutorConfig
    from bench.runner import Study

KINDS = ("local", "processes", "ray", "slurm")


@dataclass
class CellJob:
    """Everything a fresh process needs to compute one cell (picklable)."""

    study: ResolvedStudy
    root: str  # the run folder, absolute: on a cluster, a shared filesystem
    unit: Unit
    threads: int | None  # torch intra-op threads for this cell (its share of the machine)
    provenance: dict[str, Any]  # the driver's: every cell names the code that computed it
    cwd: str  # data roots in the config are relative to where `bench run` was started


@dataclass
class CellOutcome:
    id: str
    summary: dict[str, Any] = field(default_factory=dict)  # what the progress line shows
    error: str | None = None  # the cell raised (or its worker died): nothing was written for it
    trace: str | None = None


class NullProgress:
    """Progress sink in a worker: the driver shows cells done/running/failed, not training steps."""

    def start(self, what: str) -> None: ...

    def step(self, step: int, total: int, loss: float) -> None: ...


# -- the cell function -------------------------------------------------------------------------
def run_cell(study: Study, unit: Unit, progress: Any) -> CellOutcome:
    """Compute one cell and write it (npz by ``run_unit``, then json: the json marks it finished)."""
    try:
        with pinned_for(study.device):
            cell = study.run_unit(unit, progress)
        if study.writer:
            write_json(study.run_dir.cell_json(unit.id), cell)
        metric = cell.get("primary_metric")
        return CellOutcome(unit.id, {"primary_metric": metric, "metrics": cell.get("metrics", {}),
                                     "error": cell.get("error")})
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing cell (a plugin's bug, sys.exit) must not stop the rest
        from bench.failures import translate

        said = translate(exc)  # names the plugin, or the DataLoader worker's original error, in one line
        err = str(said) if said is not None else _line(exc)
        return CellOutcome(unit.id, {"error": err}, error=err, trace=traceback.format_exc())


_WORKER: dict[str, Any] = {}  # this process's Study (tasks loaded once per worker, not per cell)
_PLUGINS: set[str] = set()


def compute_cell(job: CellJob) -> CellOutcome:
    """The worker entry point of every executor but ``local``."""
    try:
        study = _worker_study(job)
    except Exception as exc:  # a plugin that fails to import here, data missing on this node, ...
        err = f"cannot set up the worker: {_line(exc)}"
        return CellOutcome(job.unit.id, {"error": err}, error=err, trace=traceback.format_exc())
    with deterministic(compile=study.cfg.train.compile):
        return run_cell(study, job.unit, NullProgress())


def _worker_study(job: CellJob) -> Study:
    """This process's Study for the job's run (built once: tasks load once per worker, not per cell)."""
    key = f"{job.root}:{job.study.hash}"
    study = _WORKER.get(key)
    if study is None:
        from bench.runner import Study

        if job.cwd and os.path.isdir(job.cwd) and os.getcwd() != job.cwd:
            os.chdir(job.cwd)
        if job.threads:
            torch.set_num_threads(job.threads)
        for plugin in job.study.worker_plugins():
            if plugin not in _PLUGINS:
                load_plugin(plugin)
                _PLUGINS.add(plugin)
        study = Study(job.study, out=Path(job.root), show_progress=False)
        study.provenance = job.provenance
        _WORKER.clear()
        _WORKER[key] = study
    return study


# -- executors ---------------------------------------------------------------------------------
class Events:
    """What the driver knows across workers: cells done, running, failed (shown on the progress bar)."""

    def __init__(self, progress: StudyProgress):
        self.progress = progress
        self.running: set[str] = set()
        self.failed: dict[str, CellOutcome] = {}

    def started(self, cid: str) -> None:
        self.running.add(cid)
        self._show(cid)

    def finished(self, out: CellOutcome) -> None:
        self.running.discard(out.id)
        if out.error:
            self.failed[out.id] = out
        self.progress.finish(out.id, out.summary)
        self._show()

    def _show(self, what: str = "") -> None:
        state = f"{len(self.running)} running, {len(self.failed)} failed"
        self.progress.start(f"{state} · {what}" if what else state)


class Executor:
    name = "?"

    def run(self, study: Study, units: list[Unit], events: Events) -> None:
        raise NotImplementedError

    def jobs(self, study: Study, units: list[Unit], threads: int | None) -> list[CellJob]:
        root = str(study.run_dir.root.resolve())
        return [CellJob(study.study, root, u, threads, study.provenance, os.getcwd()) for u in units]


class LocalExecutor(Executor):
    """In this process, one cell after another (the reference the others must equal)."""

    name = "local"

    def run(self, study, units, events):
        for unit in units:
            events.started(unit.id)
            events.finished(run_cell(study, unit, events.progress))


class ProcessExecutor(Executor):
    """A pool of N spawned processes on this machine, each with 1/N of its CPUs as torch threads.

    Each worker announces the cell it takes; a worker that dies is noticed, its cell reported
    failed and a fresh worker started for the rest."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or _cpus()

    def run(self, study, units, events):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        threads = max(1, _cpus() // self.workers)
        inbox, outbox = ctx.Queue(), ctx.Queue()
        for job in self.jobs(study, units, threads):
            inbox.put(job)
        procs: dict[int, Any] = {}
        holding: dict[int, str] = {}
        remaining = {u.id for u in units}
        respawns = len(units)  # each death costs at most one cell: never more replacements than cells

        def spawn() -> None:
            wid = max(procs, default=-1) + 1
            # not daemonic: a cell's DataLoader starts worker processes of its own, which daemons may not
            p = ctx.Process(target=_pool_worker, args=(inbox, outbox, wid, os.getpid()), daemon=False,
                            name=f"bench-worker-{wid}")
            p.start()
            procs[wid] = p
            inbox.put(None)  # one stop sign per worker, queued behind the cells

        try:
            for _ in range(min(self.workers, len(units))):
                spawn()
            while remaining:
                try:
                    kind, wid, payload = outbox.get(timeout=0.5)
                except queue.Empty:
                    kind = None
                if kind == "start":
                    holding[wid] = payload
                    events.started(payload)
                elif kind == "done":
                    holding.pop(wid, None)
                    if payload.id in remaining:
                        remaining.discard(payload.id)
                        events.finished(payload)
                for wid, p in list(procs.items()):
                    if p.is_alive():
                        continue
                    p.join()
                    del procs[wid]
                    cid = holding.pop(wid, None)
                    if p.exitcode != 0 and cid in remaining:
                        remaining.discard(cid)
                        events.finished(CellOutcome(cid, {"error": f"its worker died ({_exit(p.exitcode)})"},
                                                    error=f"its worker died ({_exit(p.exitcode)})"))
                    if p.exitcode != 0 and remaining and respawns > 0:
                        respawns -= 1
                        spawn()
                if not procs and remaining:  # a cell taken by a worker that died before saying which
                    for cid in sorted(remaining):
                        events.finished(CellOutcome(cid, {"error": "lost with a worker that died"},
                                                    error="lost with a worker that died"))
                    remaining.clear()
        finally:
            if remaining:  # interrupted: every worker stops now, none may write after the lock is released
                for p in procs.values():
                    if p.is_alive():
                        p.kill()
            for p in procs.values():
                p.join(timeout=10)
            if not any(p.is_alive() for p in procs.values()):  # nobody reads what is still queued: do not
                inbox.cancel_join_thread()  # wait at exit to flush it (interrupted, or every worker died)
            inbox.close()
            outbox.close()


def _pool_worker(inbox, outbox, wid: int, driver: int) -> None:
    import multiprocessing
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops the workers
    if sys.platform == "linux":  # the driver killed outright (SIGKILL, OOM): this worker goes with it
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # a spawned process inherits "spawn" as its default start method: every DataLoader pass would then
    # start fresh interpreters that import torch again (seconds each). Start them as `local` does.
    multiprocessing.set_start_method(None, force=True)
    while True:
        job = inbox.get()
        if job is None or os.getppid() != driver:  # stop sign, or the driver died: take no new cell
            return
        outbox.put(("start", wid, job.unit.id))
        outbox.put(("done", wid, compute_cell(job)))


class RayExecutor(Executor):
    """Each cell a Ray task with its CPU/GPU request; joins ``address`` or starts a local instance."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1, gpus_per_cell: float = 0,
                 workers: int | None = None):
        self.address, self.cpus, self.gpus, self.workers = address, cpus_per_cell, gpus_per_cell, workers

    def run(self, study, units, events):
        ray = _optional("ray", "ray", "Ray")
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, num_cpus=self.workers if self.address is None else None,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BenchError(f"executor ray: cannot join {self.address or 'a local Ray instance'} "
                                 f"({_line(exc)}); check --address (or executor.ray.address)") from None
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(compute_cell)
        refs = {}
        try:
            for job in self.jobs(study, units, max(1, int(self.cpus))):
                refs[remote.remote(job)] = job.unit.id
                events.started(job.unit.id)
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in done:
                    cid = refs.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # the worker died, or Ray could not run the task
                        out = CellOutcome(cid, {"error": _line(exc)}, error=_line(exc))
                    events.finished(out)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


class SlurmExecutor(Executor):
    """Each cell a Slurm job (one job array) through submitit, as Hydra's submitit launcher does.

    ``cluster: local`` runs the same pickled jobs as local subprocesses (tests, a workstation)."""

    name = "slurm"

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def run(self, study, units, events):
        submitit = _optional("submitit", "slurm", "submitit")
        c = self.cfg
        folder = study.run_dir.scheduler_logs / "%j"
        ex = submitit.AutoExecutor(folder=folder, cluster=c.cluster)
        params: dict[str, Any] = {"timeout_min": c.time_limit_min, "cpus_per_task": c.cpus_per_task,
                                  "gpus_per_node": c.gpus_per_task, "tasks_per_node": 1, "nodes": 1,
                                  "name": f"bench-{study.study.name}"[:60]}
        if c.mem_gb:
            params["mem_gb"] = c.mem_gb
        if c.cluster == "slurm":
            params.update(slurm_array_parallelism=c.array_parallelism,
                          **({"slurm_partition": c.partition} if c.partition else {}),
                          **({"slurm_additional_parameters": dict(c.additional)} if c.additional else {}))
        ex.update_parameters(**params)
        jobs = self.jobs(study, units, c.cpus_per_task)
        pending: dict[Any, str] = {}
        try:
            if c.cluster == "slurm":  # one array job; Slurm keeps array_parallelism of them running
                for j, job in zip(ex.map_array(compute_cell, jobs), jobs):
                    pending[j] = job.unit.id
                    events.started(job.unit.id)
                queue_ = []
            else:  # submitit's local executor starts every job at once: keep array_parallelism in flight
                queue_ = list(jobs)
            while pending or queue_:
                while queue_ and len(pending) < c.array_parallelism:
                    job = queue_.pop(0)
                    pending[ex.submit(compute_cell, job)] = job.unit.id
                    events.started(job.unit.id)
                time.sleep(0.5)
                for j in [j for j in pending if j.done()]:
                    cid = pending.pop(j)
                    try:
                        out = j.result()
                    except Exception as exc:  # killed by the cluster (time limit, preemption, OOM)
                        err = f"job {j.job_id}: {_line(exc)} (log: {j.paths.stderr})"
                        out = CellOutcome(cid, {"error": err}, error=err)
                    events.finished(out)
        finally:
            for j in pending:
                j.cancel(check=False)  # interrupted: no job may write after the lock is released


def make_executor(cfg: ExecutorConfig, kind: str | None = None, workers: int | None = None,
                  address: str | None = None) -> Executor:
    """The executor the config asks for; the command line's flags win."""
    kind = kind or cfg.kind
    workers = workers or cfg.workers
    if dist.is_initialized() and kind != "local":
        raise BenchError(f"--executor {kind}: under torchrun every process trains the same cell; use local")
    if kind == "local":
        return LocalExecutor()
    if kind == "processes":
        return ProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(address or cfg.ray.address, cfg.ray.cpus_per_cell, cfg.ray.gpus_per_cell, workers)
    if kind == "slurm":
        return SlurmExecutor(cfg.slurm)
    raise BenchError(f"--executor {kind!r}: use one of {', '.join(KINDS)}")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _optional(module: str, extra: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BenchError(f"--executor {'slurm' if extra == 'slurm' else 'ray'}: {what} is not installed; "
                         f"pip install 'identity-bench[{extra}]'") from None


def _exit(code: int | None) -> str:
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
