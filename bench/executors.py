"""Where cells run: in this process, a local pool, a Ray cluster or Slurm — they only transport work.

Every executor has the shape of Hydra's launchers: ``map(fn, jobs, events)`` calls ``fn(job)`` for
each picklable job somewhere and reports each result to ``events``; what ``fn`` computes and where it
writes is none of its business (``bench.cell.compute_cell``). A job that raises or whose worker dies
is reported failed; the others go on. ``Events`` is what the driver knows across workers (done /
running / failed), shown on the progress bar.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import importlib.util
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from bench.cell import CellJob, CellResult, failed
from bench.config import ExecutorConfig
from bench.errors import BenchError, first_line
from bench.io import owning
from bench.progress import StudyProgress
from bench.rundir import RunDir

CellFn = Callable[..., CellResult]  # bench.cell.compute_cell: (job) -> result, or (job, progress) in this process

KINDS = ("local", "processes", "ray", "slurm")


# -- executors ---------------------------------------------------------------------------------
class Events:
    """What the driver knows across workers: cells done, running, failed (shown on the progress bar)."""

    def __init__(self, progress: StudyProgress):
        self.progress = progress
        self.running: set[str] = set()
        self.failed: dict[str, CellResult] = {}

    def started(self, cid: str) -> None:
        self.running.add(cid)
        self._show(cid)

    def finished(self, out: CellResult) -> None:
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
    on_this_machine = True  # its cells compute on this machine's device (bench.driver checks their precision here)

    def map(self, fn: CellFn, jobs: list[CellJob], events: Events) -> None:
        """Call ``fn(job)`` for every job, reporting each start and result to ``events``."""
        raise NotImplementedError


def in_run(fn: CellFn, job: CellJob, *args: Any) -> CellResult:
    """``fn(job, *args)`` as a writer of the job's run folder (bench.io refuses its own files to anyone
    else): the driver holds the folder's lock, this worker computes a cell for it."""
    with owning(job.root):
        return fn(job, *args)


def with_threads(jobs: list[CellJob], threads: int) -> list[CellJob]:
    """The jobs, each with its share of a worker's CPUs as torch threads."""
    return [dataclasses.replace(j, threads=threads) for j in jobs]


class LocalExecutor(Executor):
    """In this process, one cell after another; the cell reports its training steps to the progress bar. Cells
    are bit-identical to another executor's at the same torch thread count (docs/reproducibility.md): this one
    keeps the process's, a pool gives each worker its share of the CPUs."""

    name = "local"

    def map(self, fn, jobs, events):
        for job in jobs:
            events.started(job.unit.id)
            events.finished(in_run(fn, job, events.progress))


class ProcessExecutor(Executor):
    """A pool of N spawned processes on this machine, each with 1/N of its CPUs as torch threads.

    Each worker announces the cell it takes; a worker that dies is noticed, its cell reported
    failed and a fresh worker started for the rest."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or _cpus()

    def map(self, fn, jobs, events):
        ctx = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
        inbox, outbox = ctx.Queue(), ctx.Queue()
        for job in with_threads(jobs, max(1, _cpus() // self.workers)):
            inbox.put(job)
        procs: dict[int, Any] = {}
        holding: dict[int, str] = {}
        remaining = {j.unit.id for j in jobs}
        respawns = len(jobs)  # each death costs at most one cell: never more replacements than cells

        def spawn() -> None:
            wid = max(procs, default=-1) + 1
            # not daemonic: a cell's DataLoader starts worker processes of its own, which daemons may not
            p = ctx.Process(target=_pool_worker, args=(fn, inbox, outbox, wid, os.getpid()), daemon=False,
                            name=f"bench-worker-{wid}")
            p.start()
            procs[wid] = p
            inbox.put(None)  # one stop sign per worker, queued behind the cells

        try:
            for _ in range(min(self.workers, len(jobs))):
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
                        events.finished(failed(cid, f"its worker died ({_exit(p.exitcode)})"))
                    if p.exitcode != 0 and remaining and respawns > 0:
                        respawns -= 1
                        spawn()
                if not procs and remaining:  # a cell taken by a worker that died before saying which
                    for cid in sorted(remaining):
                        events.finished(failed(cid, "lost with a worker that died"))
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


def _pool_worker(fn: CellFn, inbox, outbox, wid: int, driver: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops the workers
    if sys.platform == "linux":  # the driver killed outright (SIGKILL, OOM): this worker goes with it
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # a spawned process inherits "spawn" as its default start method: every DataLoader pass would then
    # start fresh interpreters that import torch again (seconds each). Start them as `local` does.
    multiprocessing.set_start_method(None, force=True)
    while True:
        job = inbox.get()
        if job is None or os.getppid() != driver:  # stop sign, or the driver died: take no new cell
            return
        outbox.put(("start", wid, job.unit.id))
        outbox.put(("done", wid, in_run(fn, job)))


class RayExecutor(Executor):
    """Each cell a Ray task with its CPU/GPU request; joins ``address`` or starts a local instance."""

    name = "ray"
    on_this_machine = False  # nodes of their own: each resolves train.amp on its device

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1, gpus_per_cell: float = 0,
                 workers: int | None = None):
        require("ray", "ray", "Ray")  # before the run folder is claimed
        self.address, self.cpus, self.gpus, self.workers = address, cpus_per_cell, gpus_per_cell, workers

    def map(self, fn, jobs, events):
        ray = _optional("ray", "ray", "Ray")
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, num_cpus=self.workers if self.address is None else None,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BenchError(f"executor ray: cannot join {self.address or 'a local Ray instance'} "
                                 f"({first_line(exc)}); check --address (or executor.ray.address)") from None
        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(in_run)
        refs = {}
        try:
            for job in with_threads(jobs, max(1, int(self.cpus))):
                refs[remote.remote(fn, job)] = job.unit.id
                events.started(job.unit.id)
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in done:
                    cid = refs.pop(ref)
                    try:
                        out = ray.get(ref)
                    except Exception as exc:  # the worker died, or Ray could not run the task
                        out = failed(cid, first_line(exc))
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
    on_this_machine = False  # nodes of their own: each resolves train.amp on its device

    def __init__(self, cfg: Any, logs: str | None = None):
        require("submitit", "slurm", "submitit")  # before the run folder is claimed
        if cfg.cluster == "slurm":
            missing = [cmd for cmd in ("sbatch", "srun") if which(cmd) is None]
            if missing:
                raise BenchError(f"--executor slurm: {' and '.join(missing)} not found on PATH (no Slurm on this "
                                 "machine); run from a Slurm login node, or use --executor processes")
        self.cfg, self.logs = cfg, logs

    def map(self, fn, jobs, events):
        submitit = _optional("submitit", "slurm", "submitit")
        c = self.cfg
        folder = os.path.join(self.logs or RunDir(jobs[0].root).scheduler_logs, "%j")
        ex = submitit.AutoExecutor(folder=folder, cluster=c.cluster)
        params: dict[str, Any] = {"timeout_min": c.time_limit_min, "cpus_per_task": c.cpus_per_task,
                                  "gpus_per_node": c.gpus_per_task, "tasks_per_node": 1, "nodes": 1,
                                  "name": f"bench-{jobs[0].plan.name}"[:60]}
        if c.mem_gb:
            params["mem_gb"] = c.mem_gb
        if c.cluster == "slurm":
            params.update(slurm_array_parallelism=c.array_parallelism,
                          **({"slurm_partition": c.partition} if c.partition else {}),
                          **({"slurm_additional_parameters": dict(c.additional)} if c.additional else {}))
        ex.update_parameters(**params)
        jobs = with_threads(jobs, c.cpus_per_task)
        pending: dict[Any, str] = {}
        try:
            if c.cluster == "slurm":  # one array job; Slurm keeps array_parallelism of them running
                for j, job in zip(ex.map_array(in_run, [fn] * len(jobs), jobs), jobs):
                    pending[j] = job.unit.id
                    events.started(job.unit.id)
                queue_ = []
            else:  # submitit's local executor starts every job at once: keep array_parallelism in flight
                queue_ = list(jobs)
            while pending or queue_:
                while queue_ and len(pending) < c.array_parallelism:
                    job = queue_.pop(0)
                    pending[ex.submit(in_run, fn, job)] = job.unit.id
                    events.started(job.unit.id)
                time.sleep(0.5)
                for j in [j for j in pending if j.done()]:
                    cid = pending.pop(j)
                    try:
                        out = j.result()
                    except Exception as exc:  # killed by the cluster (time limit, preemption, OOM)
                        out = failed(cid, f"job {j.job_id}: {first_line(exc)} (log: {j.paths.stderr})")
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


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found, not imported: Ray takes seconds to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def which(command: str) -> str | None:
    return shutil.which(command)


def require(module: str, extra: str, what: str) -> None:
    """One line naming the executor and the install command when ``module`` is missing."""
    if not installed(module):
        raise _missing(extra, what)


def _optional(module: str, extra: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(extra, what) from None


def _missing(extra: str, what: str) -> BenchError:
    return BenchError(f"--executor {'slurm' if extra == 'slurm' else 'ray'}: {what} is not installed; "
                      f"pip install 'identity-bench[{extra}]'")


def _exit(code: int | None) -> str:
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
