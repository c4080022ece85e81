"""``bench profile``: where one seed of a study spends its time, and how much of it is arithmetic (issue 24).

Seeds are what a study buys, so the question is what a seed costs beyond its convolutions. One seed of the
study runs twice in this process, cell after cell, each time in a temporary run folder deleted afterwards
(nothing of the user's is read back or written, but ``--out``):

1. unprofiled: the seconds of each phase, as the cells record them (``timings.train_s``, ``timings.eval_s``,
   each ablation's ``wall_s``) and the rest of the invocation (loading the tasks, building the models,
   writing cells, the report and its figures);
2. under ``torch.profiler``, one phase at a time (bench.phases: training, evaluation, each ablation; each
   phase's events are folded into counts before the next starts, so memory holds one phase's trace): the share
   of the phase each kind of torch operator takes, and the share no operator accounts for (Python between
   operators, data, the bootstrap in NumPy; the profiler's own per-operator cost inflates this share and every
   small operator, so read shares, not the profiled seconds).

Convolutions and matrix products are the arithmetic a faster precision (bf16) or a faster device speeds up;
everything else is what a seed pays beyond it.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from bench import api
from bench.data import torch_threads
from bench.errors import BenchError
from bench.failures import translate
from bench.markdown import table
from bench.phases import LABEL, observing
from bench.plan import Plan, resolve_device
from bench.precision import resolve_precision
from bench.provenance import cpu_model
from bench.results import Cell, Results

OTHER, OUTSIDE, TOTAL = "other operators", "no torch operator", ""
TRAIN_STEPS = 16  # training steps profiled per cell (after two): the step's mix of operators does not change
STEP = "ProfilerStep#"  # torch.profiler's range around each step of a scheduled profile
# an operator's kind, by the first pattern its lower-cased name matches (forward ops and their autograd backward)
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(p)) for kind, p in (
    (OTHER, r"accumulategrad"),  # the backward's adding into .grad (it contains "mul")
    ("convolution", r"conv"),
    ("pooling, resampling", r"pool|upsample|interpolate"),
    ("matmul", r"addmm|\bmm\b|bmm|matmul|::linear\b|mmbackward"),
    ("optimizer", r"^optimizer\."),
    ("normalisation", r"norm"),
    ("copies, indexing", r"\bcat\b|catbackward|pad|index|copy|::to\b|_to_copy|contiguous|clone|slice|select|zeros|"
                         r"empty|one_hot|stack|view|permute|reshape|expand|fill|rand|normal|flip|roll"),
    ("reductions, loss", r"sum|mean|argmax|argmin|max|min|cross_entropy|nll|log_softmax|logsoftmax|bincount|sort|"
                         r"topk|cumsum|all\b|any\b"),
    ("elementwise", r"relu|add|mul|sub|div|where|::eq|::ne|::gt|::lt|::ge|::le|abs|__and__|__or__|sigmoid|gelu|"
                    r"softmax|exp|log|neg|clamp|sqrt|pow|tanh|dropout"),
))
# the profiler's own bookkeeping, left out as torch's tables leave it out (torch.autograd.profiler_util._filter_name)
SKIPPED = frozenset({"[memory]", "[OutOfMemory]", "profiler::_record_function_enter",
                     "profiler::_record_function_enter_new", "profiler::_record_function_exit", "aten::is_leaf",
                     "aten::output_nr", "aten::_version"})
# a line of the profiler's native library (kineto): two at each start and stop, a CUDA probe's error without a GPU
KINETO_LINE = re.compile(rb"^[A-Z]+:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ \S+\.cpp:\d+\] ")
ARITHMETIC = ("convolution", "matmul")
COLUMNS = (*(k for k, _ in KINDS if k != OTHER), OTHER, OUTSIDE)


@cache
def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, pattern in KINDS if pattern.search(low)), OTHER)


@dataclass
class Phase:
    name: str  # train, evaluate, ablation:<name>
    seconds: float = 0.0  # unprofiled, summed over the seed's cells
    shares: dict[str, float] = field(default_factory=dict)  # kind -> share of the profiled phase time


@dataclass
class SeedProfile:
    config: str
    seed: int
    threads: int
    wall_s: float  # the unprofiled invocation
    cells: int
    phases: list[Phase]
    machine: str
    device: str = "cpu"  # the device type the cells computed on
    train_steps: int = 0  # training steps the profiled run sampled, over all cells
    peak_gb: float | None = None  # this process's peak resident memory (both runs), where the OS says it
    precision: str = "fp32"  # what the cells computed in (train.amp resolved on this device): bf16 is another speed
    amp: str = "off"  # train.amp as configured (auto is bf16 or fp32 by machine)
    sets: tuple[str, ...] = ()  # the --set options the seed ran with, as given

    @property
    def rest_s(self) -> float:
        """The invocation's time outside every cell phase: tasks, models, files, the report and figures."""
        return max(0.0, self.wall_s - sum(p.seconds for p in self.phases))

    def arithmetic_share(self) -> float:
        """Of the whole unprofiled invocation: the seconds of the phases weighted by their arithmetic shares."""
        done = sum(p.seconds * sum(p.shares.get(k, 0.0) for k in ARITHMETIC) for p in self.phases)
        return done / self.wall_s if self.wall_s else 0.0


def profile_seed(config: str | Path, *, seed: int | None = None, threads: int = 1,
                 set_options: Sequence[str] = (), plugins: Sequence[str] = ()) -> SeedProfile:
    """Run one seed of ``config`` twice in this process (unprofiled, then under torch.profiler) with ``threads``
    torch threads; ``seed``: the config's first seed when None. ``set_options``: as ``bench run --set``."""
    plan = Plan.build(config, list(set_options), tuple(plugins))  # the config's errors before any training
    chosen = plan.cfg.seeds[0] if seed is None else seed
    sets = [*set_options, f"seeds=[{chosen}]"]  # a seed of this study: its headline_only, if set, holds
    with torch_threads(threads), tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        t0 = time.perf_counter()
        unprofiled = run_once(config, Path(tmp) / "unprofiled", sets, plugins)
        wall = time.perf_counter() - t0
        seconds, cells = phase_seconds(unprofiled.cells)
        observer = PhaseProfiler()
        with observing(observer), without_profiler_log():
            run_once(config, Path(tmp) / "profiled", sets, plugins)
    shares = phase_shares(observer.counts)
    phases = [Phase(name, seconds[name], shares.get(name, {})) for name in seconds]
    device = resolve_device(plan.cfg.device)
    shown = os.path.relpath(config)  # as the user would type it from here; absolute when it lies elsewhere
    return SeedProfile(shown if not shown.startswith("..") else os.path.abspath(config), chosen, threads,
                       round(wall, 3), cells, phases, f"{cpu_model()}, {platform.machine()}, torch {torch.__version__}",
                       device.type, observer.steps, peak_memory_gb(), resolve_precision(plan.cfg.train.amp, device),
                       plan.cfg.train.amp, tuple(set_options))


def peak_memory_gb() -> float | None:
    """This process's peak resident set in GB (Linux reports kB), or None where the platform has no getrusage."""
    try:
        import resource  # noqa: PLC0415 - Unix only
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)


def run_once(config: str | Path, out: Path, sets: list[str], plugins: Sequence[str]) -> Results:
    """One run of the seed into the temporary ``out``, its results; an error says what failed, not that a folder
    about to be deleted keeps cells to resume from (what ``bench run`` would say)."""
    try:
        return api.load(api.run_folder(config, out=out, executor="local", set_options=sets, plugins=plugins))
    except BenchError as exc:
        cause = translate(exc.__cause__) if exc.__cause__ is not None else None
        raise BenchError(f"{cause or exc} (in the {out.name} run of bench profile; nothing was kept)") from exc


@contextmanager
def without_profiler_log() -> Iterator[None]:
    """Standard error (the file descriptor: the profiler's native library writes there) without the profiler's own
    lines, which come in pairs at every phase; every other line is passed on as it comes, also when the block
    raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        with os.fdopen(read, "rb") as source:
            for line in source:
                if not KINETO_LINE.match(line):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="bench-profile-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closed: the pump reads to its end and stops
        thread.join(timeout=10)  # a process this run started may still hold the pipe: it is not waited for
        if not thread.is_alive():  # else the pump still writes through it: left open
            os.close(saved)


def phase_seconds(cells: Sequence[Cell]) -> tuple[dict[str, float], int]:
    """{phase: seconds summed over the cells}, and the number of cells, from the cells' own records."""
    seconds: dict[str, float] = defaultdict(float)
    for cell in cells:
        seconds["train"] += cell.timings.get("train_s", 0.0)
        seconds["evaluate"] += cell.timings.get("eval_s", 0.0)
        for name, abl in cell.ablations.items():
            seconds[f"ablation:{name}"] += abl.wall_s
    return dict(seconds), len(cells)


class PhaseProfiler:
    """The observer (bench.phases) of the profiled run: each phase under its own torch.profiler, its events folded
    into ``counts`` when it ends. Training is sampled: up to ``TRAIN_STEPS`` steps after a first one (allocations,
    kernel choice) and one of the profiler's warm-up, each a ``ProfilerStep#`` range; every other phase is
    profiled whole. So memory holds at most one phase's trace of bounded length."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.steps = 0  # training steps sampled, over all cells
        self.active: profile | None = None
        self.ending = False

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        sampled = name == "train"
        window = schedule(wait=1, warmup=1, active=TRAIN_STEPS, repeat=1) if sampled else None
        with profile(activities=[ProfilerActivity.CPU], schedule=window,
                     on_trace_ready=lambda prof: self.fold(prof, name, sampled)) as prof:
            self.active, self.ending = prof, False
            try:
                yield
            finally:
                self.active, self.ending = None, True

    def fold(self, prof: profile, name: str, sampled: bool) -> None:
        events = list(events_of(prof))
        if not sampled:
            fold(events, self.counts, LABEL)
            return
        steps = sorted({int(e[0][len(STEP):]) for e in events if e[0].startswith(STEP)})
        if self.ending and steps:  # the window was cut short by the training's end: its last range holds what came
            last = f"{STEP}{steps.pop()}"  # after the last step (the final checkpoint, returning), not a step
            events = [e for e in events if e[0] != last]
        self.steps += len(steps)
        fold(events, self.counts, STEP, name)

    def step(self) -> None:
        if self.active is not None:
            self.active.step()


def events_of(prof: profile) -> Iterator[tuple[str, int, int, int]]:
    for e in prof.profiler.kineto_results.events():
        yield e.name(), e.start_ns(), e.end_ns(), e.start_thread_id()


def fold(events: Iterable[tuple[str, int, int, int]], counts: dict[str, Counter[str]], label: str = LABEL,
         phase: str | None = None) -> None:
    """Add to ``counts[phase]`` the time of the ranges whose name starts with ``label`` (key ``TOTAL``) and of each
    operator directly under one, by kind (an operator's own children are inside it). ``phase`` None: the phase is
    the label's name after ``label`` (``bench:evaluate``). Events are (name, start, end, thread); which is inside
    which is read from the times on each thread, as torch's own event tree is."""
    threads: dict[int, list[tuple[int, int, bool, str]]] = defaultdict(list)
    for name, start, end, thread in events:
        if name not in SKIPPED:
            # at one start the longer event first, a label before an operator of the same span: the enclosing one
            threads[thread].append((start, -end, not name.startswith(label), name))
    for rows in threads.values():
        rows.sort()
        stack: list[tuple[int, str]] = []  # the open events: (end, name)
        for start, minus_end, _, name in rows:
            end = -minus_end
            while stack and stack[-1][0] <= start:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            if name.startswith(label):
                counts[phase or name[len(label):]][TOTAL] += end - start
            elif parent.startswith(label):
                counts[phase or parent[len(label):]][kind_of(name)] += end - start
            stack.append((end, name))


def phase_shares(counts: dict[str, Counter[str]]) -> dict[str, dict[str, float]]:
    """{phase: {kind: share of the phase's profiled time}}, with ``OUTSIDE`` the share no operator accounts for."""
    shares = {}
    for phase, kinds in counts.items():
        total = kinds[TOTAL]
        inside = sum(v for k, v in kinds.items() if k != TOTAL)
        if total:
            shares[phase] = {**{k: v / total for k, v in kinds.items() if k != TOTAL},
                             OUTSIDE: max(0, total - inside) / total}
    return shares


def render(p: SeedProfile) -> str:
    """The profile as Markdown: phases by seconds (unprofiled), then each phase's time by operator kind."""
    rows = []
    for ph in sorted(p.phases, key=lambda ph: -ph.seconds):
        rows.append([ph.name, f"{ph.seconds:.1f}", f"{ph.seconds / p.wall_s:.0%}",  # no shares: none sampled
                     *((f"{ph.shares.get(c, 0.0):.0%}" if ph.shares else "—") for c in COLUMNS)])
    rows.append(["rest of the invocation", f"{p.rest_s:.1f}", f"{p.rest_s / p.wall_s:.0%}", *("" for _ in COLUMNS)])
    sets = "".join(f" --set {o}" for o in p.sets)
    head = (f"One seed (seed {p.seed}, {p.cells} cells) of `{p.config}`{sets}, measured {datetime.now():%Y-%m-%dT%H:%M} "
            f"by `python -m bench profile` on {p.machine}, device {p.device} in **{p.precision}** (train.amp: {p.amp}), "
            f"{p.threads} torch thread(s), one cell after another: **{p.wall_s:.1f} s**")
    if p.device == "cpu":
        head += (f", of which about **{p.arithmetic_share():.0%}** in convolutions and matrix products (each phase's "
                 "seconds times its arithmetic share): removing everything else would make the seed at most "
                 f"**{1 / max(p.arithmetic_share(), 1e-9):.2f}x** faster; more needs faster arithmetic ("
                 f"{'a GPU' if p.precision == 'bf16' else 'bf16 where the hardware has it, a GPU'}) or less of it.")
    else:  # the profiler's operator times are the host's: kernels run asynchronously
        head += "; the shares below are of the host's time, not the device's."
    note = ("Seconds: the unprofiled run, from the cells' own timings (`train_s`, `eval_s`, each ablation's `wall_s`); "
            "the rest of the invocation is loading the tasks, building the models, writing the cells, the report and "
            "its figures. Shares: a second run of the same seed under `torch.profiler`, each phase's time by the kind "
            f"of torch operator (backward passes included); *{OUTSIDE}* is Python between operators, data and "
            f"NumPy (the bootstrap). Training is sampled: {p.train_steps} steps over the cells (up to {TRAIN_STEPS} "
            "per cell from its third; a cell of two steps or fewer gives none, and a phase with no sample shows —, "
            "counted as no arithmetic in the bound above). The profiler's own cost per operator inflates the small operators and "
            f"*{OUTSIDE}*: read the shares as upper bounds on the overheads. On a GPU the shares are of the host's "
            "time (operators launch asynchronously; a wait lands in the operator that synchronises)."
            + (f" Peak memory of the process, both runs: {p.peak_gb:.2f} GB." if p.peak_gb is not None else ""))
    return "\n\n".join([head, table(["phase", "seconds", "of the seed", *COLUMNS], rows), note]) + "\n"
