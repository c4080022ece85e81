"""Progress display (rich): what is running, cells done, the current training bar, and ETAs."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StudyProgress:
    def __init__(self, total: int, done: int, enabled: bool = True):
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self.console, disable=not enabled, transient=False)
        self.total, self.done = total, done
        self._study = None
        self._train = None

    def __enter__(self) -> StudyProgress:
        self.progress.__enter__()
        self._study = self.progress.add_task("cells", total=self.total, completed=self.done)
        self._train = self.progress.add_task("train", total=1, visible=False)
        if self.done and self.enabled:
            self.console.print(f"resuming: {self.done}/{self.total} cells already finished")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, what: str) -> None:
        self.progress.update(self._study, description=f"cells · {what}")

    def step(self, step: int, total: int, loss: float) -> None:
        self.progress.update(self._train, total=total, completed=step, visible=True,
                             description=f"train · loss {loss:.3f}")

    def finish(self, unit_id: str, cell: dict) -> None:
        self.progress.update(self._study, advance=1)
        self.progress.update(self._train, visible=False)
        if self.enabled:
            metric = cell.get("primary_metric")
            value = cell.get("metrics", {}).get(metric)
            status = f"{metric} {value:.4f}" if value is not None else f"FAILED: {cell.get('error')}"
            self.console.print(f"  {unit_id}: {status}")
