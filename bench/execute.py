"""The driver of `bench run`: check, plan, claim and lock the run folder, dispatch, assemble.

It checks the data and architectures (nothing is written for a user error), plans the cells, claims
and locks the run folder (``RunDir``), hands the unfinished cells to an executor
(``bench.executors``) and assembles ``results.json`` and ``report.md`` from the cell files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as dist

from bench.errors import BenchError
from bench.executors import CellOutcome, Events, Executor
from bench.io import write_json
from bench.progress import StudyProgress
from bench.provenance import provenance
from bench.results import Invocation, invocations_so_far
from bench.train import deterministic

if TYPE_CHECKING:
    from bench.rundir import RunDir
    from bench.runner import Study


def run_study(study: Study, executor: Executor) -> Path:
    with deterministic(compile=study.cfg.train.compile):
        return _run(study, executor)


def _run(study: Study, executor: Executor) -> Path:
    t0 = time.perf_counter()
    study.provenance = provenance(study.device)  # the code that computes the cells, not what is checked out later
    for alias in dict.fromkeys(t for t, _ in study.cfg.pairs()):
        study.task(alias)  # missing or malformed data fails here, before anything is written
    for t, a in study.cfg.pairs():
        study.probe(t, a)
    units = study.units()
    study.check_headline()
    rd = study.run_dir
    try:
        if study.writer:
            prepare(study)
        _barrier()
        todo = []
        for u in units:
            state = rd.cell_state(u.id)
            if state == "done":
                state = study.stale(u) or "done"
                if state != "done" and study.writer:
                    rd.discard_checkpoint(u.id)  # it trained under the old rules too: retrain from scratch
            if state == "done":
                continue
            if state != "missing" and study.writer:
                print(f"warning: {state}; recomputing that cell", file=sys.stderr)
            todo.append(u)
        _barrier()
        show = study.show_progress and study.writer
        with StudyProgress(len(units), len(units) - len(todo), enabled=show) as progress:
            events = Events(progress)
            if todo:
                executor.run(study, todo, events)
        study.timings["study"] = round(time.perf_counter() - t0, 3)
        _barrier()
        if not study.writer:
            return study.dir
        if events.failed:
            raise cells_failed(events.failed, len(units))
        results = study.assemble(units)
        now = Invocation(git_commit=study.provenance.get("git_commit"), git_dirty=study.provenance.get("git_dirty"),
                         study_s=study.timings["study"], cells_computed=len(todo))
        before = [] if study.restart else invocations_so_far(rd.results)
        results = results.model_copy(update={"invocations": [*before, now]})
        write_json(rd.results, results.model_dump(mode="json", by_alias=True))
        from bench.report import write_report

        write_report(rd.root, results)
        return study.dir
    finally:
        rd.unlock()


def prepare(study: Study) -> None:
    """Claim the folder (marker first), lock it, check it holds this study, clean bench's own leftovers."""
    rd, text = study.run_dir, study.study.yaml
    try:
        if not study.restart:
            same_study(rd, study)  # before the lock: a refused run leaves the folder as it was
        rd.claim(text)
        rd.lock()
        if not study.restart:
            same_study(rd, study)  # again under the lock: what is cleaned and written is this study's
        rd.clean(study.restart)
        rd.write_config(text)
    except OSError as exc:
        raise BenchError(f"{rd.root}: cannot write the run folder ({exc.strerror or _line(exc)}); "
                         "choose another with --out") from None


def same_study(rd: RunDir, study: Study) -> None:
    old = rd.read_config() if rd.is_ours() or rd.config.exists() else None
    if old is not None and old != study.study.yaml and not same_under_current_schema(rd, study):
        from bench.config import safe_load

        diff = _dict_diff(safe_load(old), study.resolved)
        raise BenchError(f"{rd.root}: holds a run of a different config ({diff}); "
                         "use --restart to start over or --out for a new folder")


def same_under_current_schema(rd: RunDir, study: Study) -> bool:
    """The folder's config, resolved by this version of bench, is this study's: it differs only by fields added
    to the schema since it was written, which read as their defaults (and a default keeps the old behaviour)."""
    from bench.config import load_config

    try:
        return load_config(rd.config)[1] == study.resolved
    except BenchError:
        return False


def cells_failed(failed: dict[str, CellOutcome], total: int) -> BenchError:
    first = failed[sorted(failed)[0]]
    exc = BenchError(f"{first.error} ({len(failed)} of {total} cell(s) failed and were not written, first "
                     f"{first.id}; the others finished)")
    if first.trace:  # --debug shows the cell's own traceback
        exc.__cause__ = _Trace(first.trace)
    return exc


class _Trace(Exception):
    def __init__(self, text: str):
        super().__init__(f"in the cell:\n{text}")


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _dict_diff(old: dict, new: dict, prefix: str = "") -> str:
    diffs = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = _dict_diff(a, b, f"{prefix}{k}.")
            if sub:
                diffs.append(sub)
        elif a != b:
            diffs.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return "; ".join(diffs[:5])
