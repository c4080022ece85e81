"""Progress: each cell has its own clock; logs (not a terminal) get whole plain lines as things happen."""

from __future__ import annotations

import io

from rich.console import Console

from bench import progress as progress_mod
from bench.progress import PlainProgress, RichProgress, StudyProgress

OK = {"primary_metric": "accuracy", "metrics": {"accuracy": 0.5}}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_as_they_happen_each_cell_with_its_own_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    out = io.StringIO()
    with PlainProgress(total=2, done=0, stream=out) as p:
        p.start("task__very_long_architecture_name_that_would_be_cut_by_a_bar__baseline__s0")
        for step in range(1, 11):
            clock.now += 2
            p.step(step, 10, 0.5)
        p.finish("task__very_long_architecture_name_that_would_be_cut_by_a_bar__baseline__s0", OK)
        assert "0:00:20" in out.getvalue()  # printed before the study ends: a log read mid-run shows it
        p.start("cell_b")
        clock.now += 3
        p.step(1, 4, 0.25)
    lines = out.getvalue().splitlines()
    assert "very_long_architecture_name_that_would_be_cut_by_a_bar__baseline__s0: accuracy 0.5000" in lines[-3]
    assert lines[-2].startswith("[1/2 done 0:00:20 ETA 0:00:20] cell_b")  # one cell took 20 s, one is left
    assert lines[-1] == "  cell_b · train step 1/4 loss 0.250 · 0:00:03 ETA 0:00:09"  # its own clock, not 0:00:23
    assert not any("…" in line for line in lines)


def test_rich_train_bar_restarts_its_clock_for_each_cell(monkeypatch):
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with RichProgress(total=2, done=0, console=console) as p:
        train = p.progress._tasks[p._train]
        p.start("a")
        p.step(5, 10, 0.1)
        first = train.start_time
        p.start("a · block_lesion")  # an ablation phase of the same cell keeps the clock
        assert train.start_time == first
        p.finish("a", OK)
        p.start("b")
        p.step(1, 10, 0.1)
        assert train.start_time is not None and train.start_time > first
        assert train.completed == 1


def test_not_a_terminal_gets_plain_lines():
    assert isinstance(StudyProgress(3, 0, stream=io.StringIO()), PlainProgress)


def ascii_stream() -> io.TextIOWrapper:
    """A stream as PYTHONIOENCODING=ascii makes stderr, handed to the display as it is (strict errors)."""
    return io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")


def test_rich_bars_on_an_ascii_stream_spell_their_text_in_ascii():
    stream = ascii_stream()
    with RichProgress(total=2, done=1, console=Console(file=stream, force_terminal=True, width=120,
                                                            highlight=False)) as p:
        p.start("a · block_lesion")
        p.step(1, 2, 0.5)
        p.finish("a", OK)
    stream.flush()
    text = stream.buffer.getvalue().decode("ascii")
    assert "cells - a - block_lesion" in text and "a: accuracy 0.5000" in text


def test_plain_lines_on_an_ascii_stream_spell_their_text_in_ascii():
    stream = ascii_stream()
    with PlainProgress(total=1, done=0, stream=stream) as p:
        p.start("a")
        p.step(1, 1, 0.5)
        p.finish("a", OK)
    stream.flush()
    assert "  a - train step 1/1 loss 0.500 - " in stream.buffer.getvalue().decode("ascii")
