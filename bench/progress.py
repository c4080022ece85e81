"""Progress display: what is running, cells done, the current cell's training bar, and ETAs.

On a terminal: rich bars, redrawn in place. Anywhere else (a CI log, a Slurm ``.out`` file, a pipe):
plain lines, one per event, never redrawn or cut, with training progress every tenth of a cell, so a
log read while the job runs says where it is. Each cell's clock and ETA start when that cell starts.
Either display spells its text in ASCII on a stream that cannot encode it (``·``, a plugin's names):
progress never stops a run (bench.console).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.console import fit


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def cell_status(cell: dict) -> str:
    metric = cell.get("primary_metric")
    value = cell.get("metrics", {}).get(metric)
    return f"{metric} {value:.4f}" if value is not None else f"FAILED: {cell.get('error')}"


class PlainProgress:
    """Line-by-line progress for logs: ``[3/8 done 0:01:02 ETA 0:02:04] cell · train step 40/100 loss 0.52`` (3 cells
    finished of 8; the ETA counts down between cells)."""

    def __init__(self, total: int, done: int, stream: TextIO | None = None, every: float = 0.1):
        self.total, self.done = total, done
        self.stream = stream or sys.stderr
        self.every = every  # print training progress every this fraction of a cell's steps
        self.t0 = time.monotonic()
        self.cell_t0 = self.t0
        self.finished_here = 0  # cells finished by this process: the ETA's rate (resumed cells cost nothing)
        self.what = ""
        self._next = 0.0
        self._estimate: tuple[float, float] | None = None  # (seconds left, when estimated)

    def _print(self, text: str) -> None:
        print(fit(text, self.stream), file=self.stream, flush=True)

    def _eta(self) -> str:
        """Counted down from the estimate made when the last cell finished (time per finished cell times the cells
        left), so it never rises while a cell runs; '?' before a first cell finishes here."""
        if self._estimate is None:
            return "ETA ?"
        estimate, at = self._estimate
        return f"ETA {clock(estimate - (time.monotonic() - at))}"

    def __enter__(self) -> PlainProgress:
        if self.done:
            self._print(f"resuming: {self.done}/{self.total} cells already finished")
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, what: str) -> None:
        if not what.startswith(self.what) or not self.what:  # a new cell, not an ablation phase of this one
            self.cell_t0 = time.monotonic()
        self.what, self._next = what, 0.0
        self._print(f"[{self.done}/{self.total} done {clock(time.monotonic() - self.t0)} {self._eta()}] {what}")

    def step(self, step: int, total: int, loss: float) -> None:
        frac = step / max(total, 1)
        if frac + 1e-9 < self._next and step != total:
            return
        self._next = frac + self.every
        elapsed = time.monotonic() - self.cell_t0
        eta = clock(elapsed / frac * (1 - frac)) if frac > 0 else "?"
        self._print(f"  {self.what} · train step {step}/{total} loss {loss:.3f} · {clock(elapsed)} ETA {eta}")

    def finish(self, unit_id: str, cell: dict) -> None:
        self.done += 1
        self.finished_here += 1
        now = time.monotonic()
        self._estimate = ((now - self.t0) / self.finished_here * (self.total - self.done), now)
        self._print(f"  {unit_id}: {cell_status(cell)} ({clock(time.monotonic() - self.cell_t0)}; "
                    f"{self.done}/{self.total} cells)")
        self.what = ""


class RichProgress:
    def __init__(self, total: int, done: int, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self.console, transient=False)
        self.total, self.done = total, done
        self._study = None
        self._train = None
        self._cell = ""

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        self._study = self.progress.add_task("cells", total=self.total, completed=self.done)
        self._train = self.progress.add_task("train", total=1, visible=False)
        if self.done:
            self._print(f"resuming: {self.done}/{self.total} cells already finished")
        return self

    def _fit(self, text: str) -> str:
        return fit(text, self.console.file)

    def _print(self, text: str) -> None:
        self.console.print(self._fit(text))

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, what: str) -> None:
        self.progress.update(self._study, description=self._fit(f"cells · {what}"))
        if not self._cell or not what.startswith(self._cell):  # a new cell: its own clock and ETA
            self._cell = what
            self.progress.reset(self._train, total=1, visible=False)

    def step(self, step: int, total: int, loss: float) -> None:
        self.progress.update(self._train, total=total, completed=step, visible=True,
                             description=self._fit(f"train · loss {loss:.3f}"))

    def finish(self, unit_id: str, cell: dict) -> None:
        self.progress.update(self._study, advance=1)
        self.progress.update(self._train, visible=False)
        self._cell = ""
        self._print(f"  {unit_id}: {cell_status(cell)}")


class SilentProgress:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self) -> SilentProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, what: str) -> None:
        pass

    def step(self, step: int, total: int, loss: float) -> None:
        pass

    def finish(self, unit_id: str, cell: dict) -> None:
        pass


def StudyProgress(total: int, done: int, enabled: bool = True, stream: TextIO | None = None):  # noqa: N802
    """The display that fits where progress goes: rich bars on a terminal, plain lines elsewhere, or none."""
    if not enabled:
        return SilentProgress()
    stream = stream or sys.stderr
    if stream.isatty():
        return RichProgress(total, done, Console(file=stream))
    return PlainProgress(total, done, stream)
