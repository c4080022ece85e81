"""The driver of `bench run`: check the data, claim the run folder, dispatch the unfinished cells,
assemble the results.

``run_study`` reads as its checklist: the plan is already checked (``Plan.build``); the data is
loaded and one forward pass per pair probes it before anything is written; then the folder is
claimed and locked (``RunDir``), finished cells are kept (a cell computed under other ablation
versions is recomputed), the rest go to an executor as ``CellJob``s for ``bench.cell.compute_cell``,
and ``results.json`` and ``report.md`` are assembled from the cell files (``bench.analysis``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bench.analysis import assemble
from bench.cell import PROCESS, CellJob, CellResult, compute_cell, error_line, release_tasks, tasks_of, writer
from bench.config import load_config, safe_load
from bench.data import Task
from bench.diff import config_diff
from bench.errors import BenchError, first_line
from bench.executors import Events, Executor, LocalExecutor, ProcessExecutor
from bench.io import write_json
from bench.plan import Plan, Unit, build_model, merges_run, resolve_device, unused_merge_error
from bench.precision import recorded, resolve_precision
from bench.progress import StudyProgress
from bench.provenance import plan_record, provenance
from bench.report import write_report
from bench.results import INTERACTION_CALL, Cell, Invocation, Look, Results, Sequential, invocations_so_far
from bench.rundir import RunDir
from bench.sequential import look_alpha, look_sizes, should_stop
from bench.tracking import prepare as prepare_log
from bench.tracking import require as require_log
from bench.train import deterministic


@dataclass
class Options:
    """How one invocation runs a plan (none of it changes the results)."""

    out: Path | None = None  # the run folder; default: Plan.default_dir()
    restart: bool = False  # discard the folder's finished cells
    show_progress: bool = True
    log: str | None = None  # --log: experiment tracking (bench.tracking): "tensorboard", "mlflow"; None: none


def run_study(plan: Plan, executor: Executor | None = None, options: Options | None = None) -> Path:
    """Run (or resume) a study; returns its run folder, which holds results.json and report.md."""
    options = options or Options()
    rd = RunDir(options.out if options.out is not None else plan.default_dir())
    try:
        with deterministic(compile=plan.cfg.train.compile):
            return _run(plan, executor, options, rd)
    finally:
        release_tasks()


def _run(plan: Plan, executor: Executor | None, options: Options, rd: RunDir) -> Path:
    """The checklist: provenance, data, probe, claim, resume, dispatch, assemble, write."""
    t0 = time.perf_counter()
    executor = executor or LocalExecutor()
    require_log(options.log)  # a missing package is one line before anything trains
    prov = provenance(resolve_device(plan.cfg.device))  # the code that computes the cells
    if options.show_progress and writer():  # the device is recorded in provenance too (results.json, report)
        print(f"device: {prov['device']} ({prov['device_name']}; config device: {plan.cfg.device})", file=sys.stderr)
    timings: dict[str, float] = {}
    # a pool of cell processes shares the cores: each process's DataLoaders get cores // pool (cap_workers)
    pool = executor.workers if isinstance(executor, ProcessExecutor) else 1
    tasks = tasks_of(plan, timings, pool)  # missing or malformed data fails here, before anything is written
    workers = {alias: t.provenance["workers"] for alias, t in tasks.items() if "workers" in t.provenance}
    if workers:  # the DataLoader processes each file-backed task read with (capped to the cores: cap_workers)
        prov["data_workers"] = workers
    probe(plan, tasks)
    try:
        if writer():
            prepare(plan, rd, options.restart)
            prepare_log(options.log, rd.root, plan.name)  # MLflow: the store and the study's experiment, once
        _barrier()
        computed, looks = 0, []
        for look in look_plans(plan):  # one look, or seeds in rounds until the headline is decided
            todo = unfinished(look, rd, here=executor.on_this_machine)
            _barrier()
            jobs = [CellJob(look, str(rd.root.resolve()), u, None, prov, os.getcwd(), PROCESS, options.log)
                    for u in todo]
            with StudyProgress(len(look.units), len(look.units) - len(todo),
                               enabled=options.show_progress and writer()) as progress:
                events = Events(progress)
                if jobs:
                    executor.map(compute_cell, jobs, events)
            computed += len(todo)
            _barrier()
            results = None
            if writer():
                if events.failed:
                    raise cells_failed(events.failed, len(look.units))
                timings["study"] = round(time.perf_counter() - t0, 3)
                results = load_and_assemble(look, rd, tasks, prov, timings)
                one_precision(results.cells, plan.cfg.train.amp)
            stops = _agree(stop_here(plan, look, results, looks) if writer() else False)
            if writer() and plan.cfg.rounds is not None and looks:  # what each look said, before the next trains
                coming = None if stops else next_look(plan, look)
                write_json(rd.looks, looks_so_far(plan, looks, coming))
                if options.show_progress:
                    print(look_line(looks[-1], coming, stop_rule(plan)), file=sys.stderr)
            if stops:
                break
        if not writer():
            return rd.root
        results = results.model_copy(update={"config": plan.resolved,  # the study's plan, not one look's
                                             "sequential": sequential_record(plan, looks)})
        before = [] if options.restart else invocations_so_far(rd.results)
        # the plan's repository HEAD when earlier invocations computed cells: the first of them is when cells existed
        heads = [i.plan["head"] for i in before if i.cells_computed != 0 and i.plan and i.plan.get("head")]
        now = Invocation(git_commit=prov.get("git_commit"), git_dirty=prov.get("git_dirty"),
                         study_s=timings["study"], cells_computed=computed,  # over all its looks
                         plan=plan_record(plan.path, heads, computing=bool(computed)))
        results = results.model_copy(update={"invocations": [*before, now]})
        write_json(rd.results, results.model_dump(mode="json", by_alias=True))
        write_report(rd.root, results)
        return rd.root
    finally:
        rd.unlock()


def look_plans(plan: Plan) -> Iterator[Plan]:
    """The plans a study is looked at with: itself, or its first n seeds for each n of its seed rounds, each
    verdict tested at the level every look of the rounds uses (bench.sequential)."""
    rounds = plan.cfg.rounds
    if rounds is None:
        yield plan
        return
    sizes = planned_looks(plan)
    pairs = plan.cfg.verdict_pairs()
    alpha = look_alpha(pairs[0].alpha, len(sizes), pairs[0].stop) if pairs else None
    for n in sizes:
        yield plan.first_seeds(n, alpha)


def stop_here(plan: Plan, look: Plan, results: Results | None, looks: list[Look]) -> bool:
    """After a look: record it (rank 0, which has the results) and say whether the study stops here: it has no
    rounds, it reached its last seed, or every pair's headline meets the stopping rule (``verdict.stop``).
    Under torchrun rank 0 decides and the others follow it (``_agree``)."""
    if plan.cfg.rounds is None or results is None:
        return True
    looks.append(look_record(look, results))
    if len(look.cfg.seeds) == len(plan.cfg.seeds):
        return True
    pairs, last = plan.cfg.verdict_pairs(), looks[-1]
    if not pairs or (pairs[0].stop != "interaction" and len(last.headlines) < len(pairs)):
        return False
    return should_stop(look_calls(last, pairs[0].stop), pairs[0].stop, pairs[0].halfwidth)


def look_calls(look: Look, stop: str) -> list[tuple[str, float | None]]:
    """A recorded look as ``should_stop`` reads it: each headline's (call, half-width), or the interaction's
    (decided either way is supported / contradicted). The stop and the reason recorded for it both read this."""
    if stop == "interaction":
        call = (look.interaction or {}).get("call")
        return [(next((d for d, c in INTERACTION_CALL.items() if c == call), "inconclusive"), None)]
    return [(h.get("call", "missing"), None if h.get("low") is None or h.get("high") is None
             else (h["high"] - h["low"]) / 2) for h in look.headlines.values()]


def next_look(plan: Plan, look: Plan) -> int | None:
    """The seed count of the look after ``look``, None after the last planned one."""
    return next((n for n in planned_looks(plan) if n > len(look.cfg.seeds)), None)


def planned_looks(plan: Plan) -> list[int]:
    """The seed counts the study looks at (``bench.sequential.look_sizes``); none without rounds."""
    rounds = plan.cfg.rounds
    return look_sizes(len(plan.cfg.seeds), rounds.start, rounds.step) if rounds else []


def stop_rule(plan: Plan) -> str:
    """The study's ``verdict.stop`` (one rule for all its pairs: the config refuses differing rules)."""
    pairs = plan.cfg.verdict_pairs()
    return pairs[0].stop if pairs else "decided"


def looks_so_far(plan: Plan, looks: list[Look], next_seeds: int | None) -> dict[str, Any]:
    """looks.json: a growing study's looks up to now and the next planned one (None: it stops here). Rewritten at
    every look, so a study interrupted between looks, or one still growing over several sessions, has its
    looks' numbers in a file; at the stop its ``looks`` equal results.json's ``sequential.looks``."""
    pairs, sizes, stop = plan.cfg.verdict_pairs(), planned_looks(plan), stop_rule(plan)
    return {"study": plan.name, "stop": stop, "planned_looks": sizes,
            "alpha_per_look": look_alpha(pairs[0].alpha if pairs else 0.05, len(sizes), stop),
            "looks": [lk.model_dump(mode="json") for lk in looks], "next_look": next_seeds}


def look_line(look: Look, next_seeds: int | None, stop: str = "decided") -> str:
    """One line per look while a study grows: each headline (and the interaction) as the look saw it, and
    whether the study goes on. results.json is written only when the study stops, so a run interrupted
    between looks shows here what its looks said (a resume recomputes them from the kept cells)."""
    parts = [_called(label, h) for label, h in look.headlines.items()]
    if look.interaction is not None or stop == "interaction":  # missing: the stop reads it as not decided
        parts.append(_called("interaction", look.interaction or {"call": "missing"}))
    then = f"going on to {next_seeds} seeds" if next_seeds is not None else "stopping here"
    return f"look at {look.seeds} seeds: {'; '.join(parts)} -> {then}"


def _called(name: str, h: dict[str, Any]) -> str:
    """``name estimate [low, high] call``; without an interval, the call and the estimate if there is one."""
    if h.get("low") is None or h.get("high") is None:
        estimate = f" ({h['estimate']:+.3f})" if h.get("estimate") is not None else ""
        return f"{name} {h.get('call', 'missing')}{estimate}"
    return f"{name} {h['estimate']:+.3f} [{h['low']:+.3f}, {h['high']:+.3f}] {h['call']}"


def look_record(look: Plan, results: Results) -> Look:
    verdicts = results.all_verdicts()
    pairs = look.cfg.verdict_pairs()
    inter = results.interaction if pairs and pairs[0].stop == "interaction" else None
    return Look(seeds=len(look.cfg.seeds), headlines={
        (v.label or v.dense_task): ({"estimate": v.headline.difference.estimate, "low": v.headline.difference.low,
                                     "high": v.headline.difference.high, "call": v.headline.verdict}
                                    if v.headline else {"call": "missing"}) for v in verdicts},
        interaction=None if inter is None else {"estimate": inter.difference.estimate, "low": inter.difference.low,
                                                "high": inter.difference.high, "call": inter.call})


def sequential_record(plan: Plan, looks: list[Look]) -> Sequential | None:
    rounds, pairs = plan.cfg.rounds, plan.cfg.verdict_pairs()
    if rounds is None or not looks:
        return None
    sizes = planned_looks(plan)
    stop = stop_rule(plan)
    alpha = pairs[0].alpha if pairs else 0.05
    last = looks[-1]
    met = bool(pairs) and should_stop(look_calls(last, stop), stop, pairs[0].halfwidth)  # read from the look itself
    rules = {"decided": "every headline decided", "interaction": "the interaction decided",
             "halfwidth": f"every headline's half-width within {pairs[0].halfwidth or 0:g}" if pairs else ""}
    reason = rules[stop] if met else "the last planned look (max seeds)"
    return Sequential(start=rounds.start, step=rounds.step, max=len(plan.cfg.seeds), stop=stop,
                      halfwidth=pairs[0].halfwidth if pairs else None, alpha=alpha,
                      alpha_per_look=look_alpha(alpha, len(sizes), stop), planned_looks=sizes, looks=looks,
                      stopped_at=last.seeds, reason=reason)


def load_and_assemble(plan: Plan, rd: RunDir, tasks: dict[str, Task], prov: dict, timings: dict) -> Results:
    """The study's cells read back from the folder, then ``bench.analysis.assemble`` (in memory)."""
    cells = [rd.load_cell(u.id) for u in plan.units]
    arrays = {u.id: rd.load_arrays(u.id) for u in plan.units}
    infos = {alias: task.info for alias, task in tasks.items()}
    return assemble(plan, cells, arrays, infos, prov, timings)


def probe(plan: Plan, tasks: dict[str, Task]) -> None:
    """One forward pass and loss on two training examples per pair, on the CPU: an architecture that cannot
    read the task's images (too small for its depth, zero width, wrong output shape) or does not run a merge
    point it declares is a config error found before anything is written, not a traceback mid-sweep."""
    for task_alias, arch in plan.cfg.pairs():
        task, where = tasks[task_alias], f"{plan.path}: architectures.{arch} on tasks.{task_alias}"
        for split in ("train", "test"):
            if len(getattr(task, split)) == 0:
                raise BenchError(f"{plan.path}: tasks.{task_alias}: the {split} split is empty; give it examples")
        try:
            x, y = next(iter(task.train.batches(2, train=True, epoch=0, seed=0)))
            model = build_model(plan.cfg, arch, task.info).eval()
            ignore = task.info.ignore_index if task.info.ignore_index is not None else -100
            with torch.no_grad(), merges_run(model, plan.flows[arch]) as ran:
                torch.nn.functional.cross_entropy(model(x), y, ignore_index=ignore)
        except BenchError:
            raise
        except Exception as exc:
            raise BenchError(f"{where}: one forward pass on 2 training images fails ({error_line(exc)}); "
                             "check image_size, depth and width (--debug shows the traceback)") from exc
        unused = [p.name for p in plan.flows[arch].points if p.name not in ran]
        if unused:
            raise BenchError(unused_merge_error(where, unused))


def unfinished(plan: Plan, rd: RunDir, here: bool = True) -> list[Unit]:
    """The cells to compute: missing, damaged, or computed under rules that changed since (a warning each).
    ``here``: the executor computes on this machine (its precision is the cells')."""
    todo = []
    for u in plan.units:
        state = rd.cell_state(u.id)
        if state == "done":
            state = stale(plan, rd, u, here) or "done"
            if state != "done" and writer():
                rd.discard_checkpoint(u.id)  # it trained under the old rules too: retrain from scratch
        if state == "done":
            continue
        if state != "missing" and writer():
            print(f"warning: {state}; recomputing that cell", file=sys.stderr)
        todo.append(u)
    return todo


def stale(plan: Plan, rd: RunDir, unit: Unit, here: bool = True) -> str | None:
    """Why a finished cell must be recomputed, or None: an ablation that shaped it ran at another version
    than the one declared now (e.g. a bench 0.1 cell, on the old dependence scale, in a resumed folder), the
    code of its architecture, task or ablations changed (``bench.codehash``: a fixed plugin), it computed in
    another precision than ``train.amp`` gives on this device (``amp: auto`` moved to a machine with or without
    native bf16; for auto and fp16 checked only when ``here``: the cells compute on this machine), or an
    ablation would now be applicable where it was not (or the reverse)."""
    cell, where = rd.read_cell(unit.id), rd.cell_json(unit.id)  # checked whole by cell_state
    want = plan.versions(unit)
    if cell.ablation_versions != want:
        return (f"{where}: computed with ablation versions {cell.ablation_versions or '(unrecorded)'}, "
                f"this bench declares {want}")
    changed = changed_code(cell.code, plan.code_of(unit))
    if changed:
        return f"{where}: the code of {', '.join(changed)} changed since the cell was computed"
    was, now = recorded(cell.train), resolve_precision(plan.cfg.train.amp, resolve_device(plan.cfg.device))
    knowable = here or plan.cfg.train.amp in ("off", "bf16")  # auto and fp16 resolve by the computing device
    if knowable and was != now:  # a study never mixes precisions (a diverged cell
        # too: divergence depends on the precision). Where cells compute elsewhere (Ray, Slurm) this machine cannot
        # say what auto or fp16 resolve to there: one_precision checks the assembled cells instead
        return (f"{where}: computed in {was}, and train.amp {plan.cfg.train.amp!r} is {now} on this device "
                "(docs/reproducibility.md, 'Precision')")
    if unit.variant == "baseline" and cell.status == "ok":  # a diverged cell ran no ablation
        run, skipped = plan.test_ablations(unit.arch)
        for name in (n for n in plan.ablations if n in run or n in skipped):
            if (name in skipped) != (name in cell.not_applicable) or (name in run and name not in cell.ablations):
                return (f"{where}: {name} is {'not ' if name in skipped else ''}applicable now, unlike when the "
                        "cell was computed")
    return None


def one_precision(cells: Sequence[Cell], amp: str) -> None:
    """A study never mixes precisions. Cells computed on other machines (Ray, Slurm) each resolve ``train.amp``
    on their own device, so ``auto`` (or ``fp16``) on nodes that differ can give both: refused, cells kept."""
    by: dict[str, list[str]] = {}
    for cell in cells:
        by.setdefault(recorded(cell.train), []).append(cell.id)  # none recorded: fp32, never relabelled
    if len(by) > 1:
        seen = "; ".join(f"{p}: {ids[0]}" + (f" and {len(ids) - 1} more" if len(ids) > 1 else "") for p, ids in sorted(by.items()))
        raise BenchError(f"train.amp: {amp!r} computed cells in {' and '.join(sorted(by))} ({seen}): the machines that "
                         "computed them resolve it differently; add --set train.amp=bf16 (or off) to the same "
                         "command, which recomputes the cells of the other precision (docs/reproducibility.md)")


def changed_code(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """The components whose code hash differs from the one a cell recorded. A cell that recorded none (bench
    < 0.3.1) is kept: nothing says its code changed, and the committed references predate the hashes."""
    if not recorded:
        return []
    return [name for name in sorted(set(recorded) | set(now)) if recorded.get(name) != now.get(name)]


def prepare(plan: Plan, rd: RunDir, restart: bool) -> None:
    """Claim the folder (marker first), lock it, check it holds this study, clean bench's own leftovers."""
    try:
        if not restart:
            same_study(plan, rd)  # before the lock: a refused run leaves the folder as it was
        rd.claim(plan.yaml)
        rd.lock()
        if not restart:
            same_study(plan, rd, warn=True)  # again under the lock: what is cleaned and written is this study's
        rd.clean(restart)
        rd.write_config(plan.yaml)
    except OSError as exc:
        raise BenchError(f"{rd.root}: cannot write the run folder ({exc.strerror or first_line(exc)}); "
                         "choose another with --out") from None


def same_study(plan: Plan, rd: RunDir, warn: bool = False) -> None:
    """The folder holds this study, or a round of it with fewer seeds (growing a study: only the new seeds'
    cells are computed), or it in another ``train.amp`` (its cells of another precision recomputed; ``warn``:
    say so); else refused with the difference shown."""
    old = rd.read_config() if rd.is_ours() or rd.config.exists() else None
    if old is None or old == plan.yaml or same_under_current_schema(plan, rd):
        return
    before = as_resolved_now(rd, old)
    if grows_seeds(before, plan.resolved) or same_but_precision(before, plan.resolved):
        if warn and before is not None and amp_of(before) != amp_of(plan.resolved) and writer():
            print(f"warning: {rd.root}: train.amp {amp_of(before)!r} -> {amp_of(plan.resolved)!r}: the cells computed "
                  "in another precision than it gives are recomputed", file=sys.stderr)
        return
    diff = "; ".join(config_diff(safe_load(old), plan.resolved, limit=5, sides=None, by_name=False))
    raise BenchError(f"{rd.root}: holds a run of a different config ({diff}); "
                     "use --restart to start over or --out for a new folder")


def amp_of(resolved: dict[str, Any]) -> Any:
    return (resolved.get("train") or {}).get("amp", "off")


def same_but_precision(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """``now`` is ``before`` (or a round of it with more seeds) in another ``train.amp``: the same study, its
    cells of another precision recomputed (a cell records its precision: bench.driver.stale), none mixed."""
    if before is None or not isinstance(before.get("train"), dict) or not isinstance(now.get("train"), dict):
        return False
    def without_amp(c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "train": {k: v for k, v in c["train"].items() if k != "amp"}}
    b, n = without_amp(before), without_amp(now)
    return b == n or grows_seeds(b, n)


def as_resolved_now(rd: RunDir, old: str) -> dict[str, Any] | None:
    """The folder's config as this bench resolves it (fields added since read as their defaults), or as written
    where it no longer resolves here (e.g. a plugin path relative to the original config)."""
    try:
        return load_config(rd.config).resolved()
    except BenchError:
        try:
            loaded = safe_load(old)
        except Exception:  # noqa: BLE001 - unreadable: not a round of this study
            return None
        return loaded if isinstance(loaded, dict) else None


def grows_seeds(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """``now`` is ``before`` with seeds added and nothing else changed: the next round of a study."""
    if before is None or not isinstance(before.get("seeds"), list):
        return False
    rest = {k: v for k, v in before.items() if k != "seeds"} == {k: v for k, v in now.items() if k != "seeds"}
    return rest and set(before["seeds"]) < set(now["seeds"])


def same_under_current_schema(plan: Plan, rd: RunDir) -> bool:
    """The folder's config, resolved by this version of bench, is this study's: it differs only by fields added
    to the schema since it was written, which read as their defaults (and a default keeps the old behaviour)."""
    try:
        return load_config(rd.config).resolved() == plan.resolved
    except BenchError:
        return False


def cells_failed(failed: dict[str, CellResult], total: int) -> BenchError:
    first = failed[sorted(failed)[0]]
    exc = BenchError(f"{first.error} ({len(failed)} of {total} cell(s) failed and were not written, first "
                     f"{first.id}; the others finished)")
    if first.trace:  # --debug shows the cell's own traceback
        exc.__cause__ = _Trace(first.trace)
    return exc


class _Trace(Exception):
    def __init__(self, text: str):
        super().__init__(f"in the cell:\n{text}")


def _agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a look's stop decision); the flag itself without torchrun."""
    if not dist.is_initialized():
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
