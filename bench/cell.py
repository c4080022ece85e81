"""One cell: train one (task, architecture, variant, seed), evaluate it, run its ablations, write it.

``compute_cell(job)`` depends only on its job (a picklable ``CellJob``), so every executor ships the
same function: ``local`` calls it in the driver's process, the others in workers. It writes the
cell atomically (npz first, then the json that marks it finished: ``RunDir``), so a worker that dies
loses only its cell and the same command resumes; an interrupted training resumes from its last
epoch checkpoint. A cell that raises returns its error; it never stops the other cells.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from pydantic import ValidationError

from bench.ablations.base import AblationContext
from bench.data import Task, cap_workers, cpu_cores, pinned_for
from bench.errors import BenchError, first_line, worker_error
from bench.evaluate import predict_stats
from bench.failures import translate
from bench.flow import identity_flow, set_edits
from bench.io import save_npz, write_json
from bench.metrics import SCALES, chance_outcome, primary_metric, shared_weights
from bench.models.joint import weights_hash
from bench.phases import phase
from bench.plan import Plan, Unit, resolve_device, spec_dict
from bench.precision import autocast, recorded, resolve_precision
from bench.provenance import CELL_PROVENANCE
from bench.registry import TASKS, load_plugin
from bench.rundir import RunDir
from bench.stats import percentile_interval
from bench.tracking import Tracker, cell_params, numbers, open_log
from bench.train import DivergedError, Joint, deterministic, train


class Progress(Protocol):
    """Where a cell reports what it does (the driver's progress bar in ``local``; nothing in a worker)."""

    def start(self, what: str) -> None: ...

    def step(self, step: int, total: int, loss: float) -> None: ...


class NullProgress:
    """Progress sink in a worker: the driver shows cells done/running/failed, not training steps."""

    def start(self, what: str) -> None: ...

    def step(self, step: int, total: int, loss: float) -> None: ...


@dataclass
class CellJob:
    """Everything a fresh process needs to compute one cell (picklable)."""

    plan: Plan
    root: str  # the run folder, absolute: on a cluster, a shared filesystem
    unit: Unit
    threads: int | None  # torch intra-op threads for this cell (its share of the machine); None: leave
    provenance: dict[str, Any]  # the driver's: every cell names the code that computed it
    cwd: str  # data roots in the config are relative to where `bench run` was started
    driver: str  # the driver process's token (``PROCESS``): `local` computes cells in it, already set up
    log: str | None = None  # --log: experiment tracking of the cell's curves (bench.tracking); never changes results


@dataclass
class CellResult:
    id: str
    summary: dict[str, Any] = field(default_factory=dict)  # what the progress line shows
    error: str | None = None  # the cell raised (or its worker died): nothing was written for it
    trace: str | None = None


def failed(cid: str, error: str, trace: str | None = None) -> CellResult:
    return CellResult(cid, {"error": error}, error=error, trace=trace)


# -- the cell function -------------------------------------------------------------------------
def compute_cell(job: CellJob, progress: Progress | None = None) -> CellResult:
    """Compute one cell and write it; the entry point of every executor."""
    try:
        setup_process(job)
        caps = job.provenance.get("data_workers", {}) if job.driver != PROCESS else None
        task = task_of(job.plan, job.unit.task, caps=caps)
        partner = job.plan.partner(job.unit)  # a multi_head network trains on its other task too
        other = task_of(job.plan, partner, caps=caps) if partner is not None else None
    except Exception as exc:  # a plugin that fails to import here, data missing on this node, ...
        return failed(job.unit.id, f"cannot set up the worker: {first_line(exc)}", traceback.format_exc())
    try:
        device = resolve_device(job.plan.cfg.device)
        with deterministic(compile=job.plan.cfg.train.compile), pinned_for(device):
            joint = {} if other is None else {"partner": other}  # a separate network's call is as it always was
            cell, arrays = train_and_ablate(job, task, device, progress or NullProgress(), **joint)
        if writer():
            rd = RunDir(job.root)
            save_npz(rd.cell_npz(job.unit.id), **arrays)
            write_json(rd.cell_json(job.unit.id), cell)  # written last: it marks the cell finished
        return CellResult(job.unit.id, {"primary_metric": cell.get("primary_metric"),
                                        "metrics": cell.get("metrics", {}), "error": cell.get("error")})
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing cell (a plugin's bug, sys.exit) must not stop the rest
        said = translate(exc)  # names the plugin, or the DataLoader worker's original error, in one line
        return failed(job.unit.id, str(said) if said is not None else error_line(exc), traceback.format_exc())


def train_and_ablate(job: CellJob, task: Task, device: torch.device, progress: Progress,
                     partner: Task | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The cell's record (``bench.results.Cell``) and arrays: the baseline's per-example statistics, chance's,
    and each test-time ablation's bootstrap replicates (what the verdict reads). ``partner``: the other task of a
    multi_head unit's network, trained jointly with ``task``; the cell then evaluates the network's own head."""
    plan, unit, train_cfg = job.plan, job.unit, job.plan.cfg.train
    info, rd = task.info, RunDir(job.root)
    joint = joint_training(plan, unit, task, partner) if partner is not None else None
    torch.manual_seed(unit.seed)
    # a capacity-matched variant at its own width; a joint unit's network the same in both its cells
    model = plan.model(unit, info, partner.info if partner is not None else None)
    flow = identity_flow(model)
    # a training variant keeps its edits for life
    set_edits([(model.get_submodule(flow[name].merge), edit) for name, edit in plan.edits(unit).items()])
    cell: dict[str, Any] = {
        "id": unit.id, "task": unit.task, "architecture": unit.arch, "variant": unit.variant, "seed": unit.seed,
        "status": "ok", "task_kind": info.kind, "primary_metric": primary_metric(info), "n_test": len(task.test),
        "n_params": sum(p.numel() for p in model.parameters()),
        "architecture_overrides": plan.arch_params.get(unit.arch, {}).get(unit.variant, {}), "pretraining": getattr(model, "pretraining", None),
        "identity_flow": {"blocks": len(flow.blocks), "residual_blocks": len(flow.residual_blocks),
                          "skips": len(flow.skips)}, "timings": {},
        "computed_with": {k: job.provenance.get(k) for k in CELL_PROVENANCE},
        "ablation_versions": plan.versions(unit), "code": plan.code_of(unit)}
    t0 = time.perf_counter()
    precision = resolve_precision(train_cfg.amp, device)  # of every forward pass of this cell, ablations included
    resume = resumable(rd, unit.id, device, precision)
    if resume is not None and writer():
        print(f"resuming {unit.id} from step {int(resume['step'])}", file=sys.stderr, flush=True)
    log = None
    if job.log is not None and writer():  # the cell's curves: continued from the checkpoint's step if resumed
        log = open_log(job.log, rd.root, unit.id, fresh=resume is None, step=0 if resume is None else
                       int(resume["step"]), study=plan.name, params=cell_params(plan, unit))
    with closing_log(log):
        try:
            with phase("train"):  # the phases a profile reads (bench.phases)
                cell["train"] = train(model, task, train_cfg, seed=unit.seed, device=device,
                                      checkpoint=rd.checkpoint(unit.id), on_step=progress.step, resume=resume,
                                      joint=joint, on_log=None if log is None else
                                      (lambda step, v: log.scalars(step, numbers(v, "train/"))))
        except DivergedError as exc:  # its precision recorded: divergence depends on it (bench.driver.stale)
            cell.update(status="failed", error=f"diverged: {exc}", train={"precision": precision})
            if log is not None:
                log.close(ok=False)
            return cell, {}
        if joint is not None:  # the two cells of one joint network record the same weights (CPU: bit for bit)
            block = plan.cfg.joint_of(unit.arch)
            cell["train"]["joint"] = {"dense": block.dense, "global": block.global_, "head": joint.own,
                                      "loss_weights": {"dense": joint.weights[0], "global": joint.weights[1]},
                                      "weights_sha256": weights_hash(model)}
        cell["timings"]["train_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        with phase("evaluate"):
            baseline = predict_stats(model, task.test, info, batch_size=train_cfg.eval_batch_size, device=device,
                                     amp=train_cfg.amp)
            chance = chance_outcome(task.train.targets(), task.test.targets(), info)
        cell["metrics"], cell["chance"] = baseline.metrics(), chance.metrics()
        if log is not None:  # the final metrics beside the curves, at the last step
            log.final(cell["train"]["steps"], cell)
    cell["timings"]["eval_s"] = round(time.perf_counter() - t0, 3)
    # the verdict's conditioning check reads the baseline's margins over chance from its stats
    arrays = {"stats": baseline.stats, "chance_stats": chance.stats}
    cell["ablations"], cell["not_applicable"] = {}, {}
    if unit.variant != "baseline":
        return cell, arrays
    weights = shared_weights(baseline.n, plan.cfg.bootstrap)
    run, cell["not_applicable"] = plan.test_ablations(unit.arch)
    for name, abl in run.items():
        progress.start(f"{unit.id} · {name}")
        ctx = AblationContext(model, flow, task, device, unit.seed, baseline, chance, weights,
                              train_cfg.eval_batch_size, train_cfg.amp, abl.params, SCALES[plan.cfg.scale])
        t1 = time.perf_counter()
        # every forward pass in the cell's precision: calibration, BN re-estimation, readouts, path gradients too;
        # uncached, since weights may change inside (the identity readout trains, a plugin may edit in place)
        with phase(f"ablation:{name}"), autocast(device, train_cfg.amp, cache=False):
            out = abl.run(ctx)
        summary = declared(name, type(abl).Summary, out.summary, "its summary")  # the declared types
        records = [declared(name, type(abl).Record, r, f"record {i}") for i, r in enumerate(out.records)]
        cell["ablations"][name] = {"version": abl.version, "settings": abl.params.model_dump(), "records": records,
                                   "summary": summary,
                                   "summary_ci": percentile_interval(summary.get(abl.measure), out.summary_boot),
                                   "wall_s": round(time.perf_counter() - t1, 3)}
        if out.summary_boot is not None:
            arrays[f"boot__{name}"] = np.asarray(out.summary_boot)
    return cell, arrays


def resumable(rd: RunDir, cid: str, device: torch.device, precision: str) -> dict | None:
    """The cell's epoch checkpoint to resume from, or None; one trained in another precision (``amp: auto`` on
    another machine, a requeued job on another node type) is discarded: a cell never mixes precisions."""
    state = rd.load_checkpoint(cid, device)
    if state is None or recorded(state) == precision:
        return state
    if writer():
        print(f"warning: {rd.checkpoint(cid)}: trained in {recorded(state)}, and this cell computes "
              f"in {precision} on this device; retraining it from scratch", file=sys.stderr, flush=True)
        rd.discard_checkpoint(cid)
    return None


@contextmanager
def closing_log(log: Tracker | None) -> Iterator[Any]:
    """The cell's log, closed (flushed) however training ends; an exception marks it failed."""
    try:
        yield log
    except BaseException:
        if log is not None:
            log.close(ok=False)
        raise
    finally:
        if log is not None:
            log.close()


def joint_training(plan: Plan, unit: Unit, task: Task, partner: Task) -> Joint:
    """How a multi_head unit trains: its two tasks, dense first whichever cell this is (so both cells train the
    same network), after checking that they hold the same number of images and the same first test batch (the
    trainer compares every training batch)."""
    block = plan.cfg.joint_of(unit.arch)
    own = "dense" if unit.task == block.dense else "global"
    dense, glob = (task, partner) if own == "dense" else (partner, task)
    for split in ("train", "test"):
        a, b = getattr(dense, split), getattr(glob, split)
        same = len(a) == len(b)
        if same and len(a):
            (x, _), (x_global, _) = next(iter(a.batches(8, train=False))), next(iter(b.batches(8, train=False)))
            same = x.shape == x_global.shape and torch.equal(x, x_global)
        if not same:
            raise BenchError(f"multi_head: tasks {block.dense} and {block.global_} hold different {split} images "
                             f"({len(a)} and {len(b)}); give both the same images (the same generator parameters, or "
                             "classify_from_masks of the dense task without dropping images)")
    lw = block.loss_weights
    return Joint(dense, glob, (lw.dense, lw.global_), own)


def declared(name: str, model: type, value: Any, what: str) -> dict:
    """``value`` as the ablation's declared pydantic type dumps it; one line naming the ablation if not."""
    try:
        return model.model_validate(value).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "value"
        raise BenchError(f"ablation {name}: {what} does not match its declared {model.__name__} ({where}: "
                         f"{err['msg']}); return that type from run()") from None


def error_line(exc: BaseException) -> str:
    """A cell's error in one line: the DataLoader worker's original exception where there is one."""
    return (worker_error(str(exc)) or first_line(exc))[:300]


def writer() -> bool:
    """Under torchrun every rank trains (DDP) and evaluates the full test set; rank 0 alone writes."""
    return not dist.is_initialized() or dist.get_rank() == 0


# -- the process a cell runs in ----------------------------------------------------------------
# this process, told apart from any other on any host (a pid alone repeats across containers and nodes)
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
_TASKS: dict[tuple[str, str], dict[str, Task]] = {}  # (plan hash, cwd) -> its tasks, loaded once per process
_PLUGINS: set[str] = set()


def task_of(plan: Plan, alias: str, timings: dict[str, float] | None = None, processes: int = 1,
            caps: dict[str, int] | None = None) -> Task:
    """A task of the plan, built once per process (a worker loads only the tasks of the cells it gets);
    ``timings`` gets its load time. ``processes`` and ``caps``: as ``build_task``."""
    key = (plan.hash, os.getcwd())  # data roots in a config are relative to the working directory
    if key not in _TASKS:
        _TASKS.clear()  # one study per process at a time: a worker moving on frees the last one's data
        _TASKS[key] = {}
    loaded = _TASKS[key]
    if alias not in loaded:
        t0 = time.perf_counter()
        loaded[alias] = build_task(plan, alias, processes, caps)
        if timings is not None:
            timings[f"load_task.{alias}"] = round(time.perf_counter() - t0, 3)
    return loaded[alias]


def tasks_of(plan: Plan, timings: dict[str, float] | None = None, processes: int = 1) -> dict[str, Task]:
    """Every task of the plan: the driver builds them to check the data before it writes anything, and
    ``local`` cells then reuse them. ``processes``: the cell processes that will share this machine's cores."""
    return {alias: task_of(plan, alias, timings, processes) for alias in dict.fromkeys(t for t, _ in plan.cfg.pairs())}


def release_tasks() -> None:
    """Free the loaded tasks (the driver, when its study is done: a notebook running several keeps none)."""
    _TASKS.clear()


def build_task(plan: Plan, alias: str, processes: int = 1, caps: dict[str, int] | None = None) -> Task:
    """The task ``alias`` of the plan, its DataLoader workers capped to the cores here, or to cores // ``processes``
    where a pool of that many cell processes shares them (``cap_workers``: one note, said by the writing process).
    ``caps``: in a pool worker, the driver's counts (its ``provenance.data_workers``): the same cap, no note."""
    try:
        task = TASKS.build(spec_dict(plan.cfg.tasks[alias]))
    except BenchError:
        raise
    except Exception as exc:  # e.g. n_train: 0, num_classes: 0: parameters the factory cannot build
        raise BenchError(f"{plan.path}: tasks.{alias}: cannot build the task ({error_line(exc)}); "
                         "check its parameters (--debug shows the traceback)") from exc
    if caps is not None:  # a pool worker: the driver decided the count and said the note
        cap_workers(task, alias, note=False, limit=min(caps.get(alias, cpu_cores()), cpu_cores()))
    else:
        cap_workers(task, alias, note=writer(), processes=processes)
    return task


def setup_process(job: CellJob) -> None:
    """In a worker: the driver's working directory, this cell's thread share, the study's plugins. In the
    driver's own process (``local``) each is already so."""
    if job.driver == PROCESS:
        return
    if job.cwd and os.path.isdir(job.cwd) and os.getcwd() != job.cwd:
        os.chdir(job.cwd)
    if job.threads and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)
    for plugin in job.plan.worker_plugins():
        if plugin not in _PLUGINS:
            load_plugin(plugin)
            _PLUGINS.add(plugin)
