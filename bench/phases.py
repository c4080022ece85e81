"""The phases of a cell (its training, the baseline's evaluation, each test-time ablation), labelled and observable.

Each phase is a ``bench:<phase>`` range in torch.profiler's trace (``record_function``), so any profile of a run
shows where a cell's time goes. An observer (``observing``) wraps every phase and hears every training step
(``step``, which bench.train calls): ``bench profile`` profiles each phase by itself, training in a window of steps,
and folds it before the next, so a seed's profile holds a bounded trace at a time, not a whole seed's (gigabytes).
With no observer a phase costs one ``record_function`` and a step one empty call: microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol

from torch.autograd.profiler import record_function

LABEL = "bench:"


class Observer(Protocol):
    def __call__(self, name: str) -> AbstractContextManager: ...  # wraps the phase ``name``

    def step(self) -> None: ...  # a training step ended


_observers: list[Observer] = []


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Run the block as the phase ``name`` (``train``, ``evaluate``, ``ablation:<name>``)."""
    with (_observers[-1](name) if _observers else nullcontext()), record_function(LABEL + name):
        yield


def step() -> None:
    """A training step ended (bench.train calls it after each optimizer step)."""
    if _observers:
        _observers[-1].step()


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Wrap every phase run in this process by ``observer`` until the block ends."""
    _observers.append(observer)
    try:
        yield
    finally:
        _observers.pop()
