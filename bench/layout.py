"""The names of a run folder's own entries, in one place: ``bench.rundir`` lays the folder out with them and
``bench.io`` (which rundir imports) refuses to write them from any other command."""

from __future__ import annotations

MARKER = ".bench-run"  # written first: the folder is bench's
LOCK = ".bench.lock"  # held by the run writing the folder
CONFIG = "config.resolved.yaml"
LOOKS = "looks.json"  # a study in seed rounds: its looks so far, written at each look (results.json only at its stop)
# a run folder's own entries: only the run that holds the folder writes them
RUN_FILES = frozenset({"results.json", "report.md", CONFIG, LOOKS, "cells", "checkpoints", "logs", MARKER, LOCK, ".slurm"})
LOG_EVENTS = "events.out.tfevents."  # --log tensorboard's files in logs/<cell id>/ (bench.tracking)
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")  # the report's figures, at the run folder's top


def is_run_file(name: str, top: bool) -> bool:
    """Whether ``name`` (a run folder's entry; ``top``: directly in the folder) is one of the run's own."""
    return name in RUN_FILES or (top and name.endswith(FIGURE_SUFFIXES))
