"""The run folder: its layout, its ownership marker, its lock, and the one loader of its content.

Every module (runner, workers, verdict, reports) asks ``RunDir`` for a path; none formats one.

Ownership: ``.bench-run`` is written before anything else, so a folder is recognisably bench's.
bench refuses to write into a non-empty folder without it, and its clean-up (``--restart``, stale
temporary files of a killed write) touches only names bench gives its own files; never a glob over
the tree. Two invocations on one folder are kept apart by an advisory lock (``.bench.lock``, which
names the holder); the kernel drops it when the holder dies, so a killed run never leaves it stale.

Reading: a damaged cell (garbage, truncated, wrong fields) is *recomputed*, with a warning line:
cells are deterministic functions of the config, so recomputing one gives exactly what was lost and
saves the user a step. A damaged checkpoint is discarded and its cell retrained from scratch, for
the same reason. A damaged ``config.resolved.yaml`` is a user decision (it is how bench knows what
the folder holds): exit 2 with one line naming it and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import safe_load
from bench.errors import BenchError, first_line
from bench.io import (
    DiskFull,
    disown,
    is_disk_full,
    kind_of,
    make_folder,
    open_regular,
    own,
    write_json,
    write_text,
)
from bench.layout import CONFIG, FIGURE_SUFFIXES, LOCK, LOG_EVENTS, LOOKS, MARKER
from bench.results import CELL_ID, Cell, load_results

FOLDERS = ("cells", "checkpoints", "logs", ".slurm")  # logs: --log tensorboard|mlflow (bench.tracking)
CELL_SUFFIXES = (".json", ".npz", ".dependence_boot.npy")  # the .npy: replicates written by bench < 0.3, now recomputed
TOP_FILES = ("results.json", "report.md", CONFIG, LOOKS)


class DamagedFile(BenchError):
    """A run-folder file bench wrote cannot be read back; the message names it and the fix."""


class RunDir:
    """The layout of one run folder, and the only code that reads or cleans it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock_fd: int | None = None

    # -- layout ---------------------------------------------------------------------------------
    @property
    def cells(self) -> Path:
        return self.root / "cells"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        """``--log``'s files (bench.tracking): one folder per cell."""
        return self.root / "logs"

    @property
    def mlflow_store(self) -> Path:
        """``--log mlflow``'s file store (bench.tracking): an experiment for the study, a run per cell."""
        return self.logs / "mlflow"

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def looks(self) -> Path:
        return self.root / LOOKS

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK

    @property
    def scheduler_logs(self) -> Path:
        """submitit's job folder (pickled jobs, logs) when cells run on Slurm."""
        return self.root / ".slurm"

    def cell_json(self, cid: str) -> Path:
        return self.cells / f"{cid}.json"

    def cell_npz(self, cid: str) -> Path:
        return self.cells / f"{cid}.npz"

    def checkpoint(self, cid: str) -> Path:
        return self.checkpoints / f"{cid}.pt"

    def cell_log(self, cid: str) -> Path:
        return self.logs / cid

    def figure(self, name: str) -> Path:
        return self.root / f"{name}.png"

    def state(self) -> tuple:
        """What a run writes first (config.resolved.yaml, replaced atomically: a new inode) and its finished
        cells: a change means an invocation wrote the folder."""
        try:
            st = self.config.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        return stamp, sorted(self.cells.glob("*.json")) if self.cells.is_dir() else []

    def finished_cells(self) -> int:
        return len(list(self.cells.glob("*.json"))) if self.cells.is_dir() else 0

    # -- ownership ------------------------------------------------------------------------------
    def is_ours(self) -> bool:
        return self.marker.is_file()

    def claim(self, resolved_yaml: str) -> None:
        """Make the folder bench's (marker first) or refuse: a non-empty folder bench did not create is
        the user's. A folder from before the marker whose config.resolved.yaml is exactly this study's
        is adopted (that file proves bench wrote it)."""
        if self.root.exists() and not self.root.is_dir():
            raise BenchError(f"{self.root}: cannot write the run folder (it is a file); choose another with --out")
        if self.root.is_dir() and not self.is_ours() and any(self.root.iterdir()):
            legacy = self.config.is_file() and self.config.read_bytes() == resolved_yaml.encode()
            if not legacy:
                raise BenchError(f"{self.root}: is not empty and was not created by bench (no {MARKER}); "
                                 "bench never writes among files it did not create: use --out with a new or empty folder")
        self.check_layout()
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.is_ours():
            write_json(self.marker, {"written_by": "bench", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                       run=self.root)

    def check_layout(self) -> None:
        """Before anything is written: bench's names here are real files and folders. A link named like one
        of them would make a write land in the user's file or folder; a device or FIFO would be replaced."""
        if not self.root.is_dir():
            return
        for name in FOLDERS:
            mode = _lmode(self.root / name)
            if mode is not None and stat.S_ISLNK(mode):
                raise BenchError(f"{self.root / name}: is a symbolic link; bench writes only real folders inside "
                                 "its run folder: move it away")
            if mode is not None and not stat.S_ISDIR(mode):
                raise BenchError(f"{self.root / name}: is a {kind_of(mode)}, not a folder; move it away")
        for p in [*(self.root / n for n in (*TOP_FILES, MARKER, LOCK)),
                  *(p for suffix in FIGURE_SUFFIXES for p in self.root.glob(f"*{suffix}"))]:
            mode = _lmode(p)
            if mode is not None and stat.S_ISLNK(mode):
                raise BenchError(f"{p}: is a symbolic link; bench never writes through a link inside its run "
                                 "folder (what it points to is left as it is): move it away")
            if mode is not None and not stat.S_ISREG(mode):
                raise BenchError(f"{p}: is a {kind_of(mode)}, not a regular file (bench writes a file here); "
                                 "move it away")

    def own_files(self) -> Iterator[Path]:
        """Files bench wrote here, recognised by their names alone (cells, checkpoints, temp files)."""
        if self.cells.is_dir():
            for p in self.cells.iterdir():
                name = p.name
                for suffix in CELL_SUFFIXES:
                    if name.endswith(suffix) and CELL_ID.match(name[: -len(suffix)]) and p.is_file():
                        yield p
                        break
        if self.checkpoints.is_dir():
            for p in self.checkpoints.iterdir():
                if p.suffix == ".pt" and CELL_ID.match(p.stem) and p.is_file():
                    yield p
        yield from self.own_logs()

    def own_logs(self) -> Iterator[Path]:
        """``--log``'s event files: ``logs/<cell id>/events.out.tfevents.*``, real files in real folders."""
        if _lmode(self.logs) is None or not stat.S_ISDIR(_lmode(self.logs)):
            return
        for folder in self.logs.iterdir():
            if not (CELL_ID.match(folder.name) and (m := _lmode(folder)) is not None and stat.S_ISDIR(m)):
                continue
            for p in folder.iterdir():
                if p.name.startswith(LOG_EVENTS) and (m := _lmode(p)) is not None and stat.S_ISREG(m):
                    yield p

    def stale_temporaries(self) -> Iterator[Path]:
        """``.<name>.<random>.tmp`` left by an atomic write cut short, where <name> is one of bench's."""
        for folder, ours in ((self.root, lambda n: n in TOP_FILES or n.endswith(FIGURE_SUFFIXES) or n == MARKER),
                             (self.cells, lambda n: any(n.endswith(s) and CELL_ID.match(n[: -len(s)])
                                                        for s in CELL_SUFFIXES)),
                             (self.checkpoints, lambda n: n.endswith(".pt") and bool(CELL_ID.match(n[:-3])))):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{6,}\.tmp", p.name)
                if m and ours(m.group(1)) and p.is_file():
                    yield p

    def clean(self, restart: bool) -> None:
        """Remove stale temporaries; with ``restart`` also every cell and checkpoint bench wrote, and the earlier
        plan's looks.json (results.json and report.md are replaced at the stop; looks.json, written only by a
        study in seed rounds, would otherwise outlive a restart as another plan's looks)."""
        self.check_layout()  # again under the lock: what is cleaned is inside this folder (looks.json a real file)
        for p in [*self.stale_temporaries(), *(self.own_files() if restart else ()),
                  *([self.looks] if restart else [])]:
            p.unlink(missing_ok=True)
        if restart and _lmode(self.logs) is not None and stat.S_ISDIR(_lmode(self.logs)):
            for folder in self.logs.iterdir():  # the cells' log folders, emptied above (a user's file keeps its own)
                if CELL_ID.match(folder.name) and (m := _lmode(folder)) is not None and stat.S_ISDIR(m):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            if (m := _lmode(self.mlflow_store)) is not None and stat.S_ISDIR(m):  # --log mlflow's store: bench's own
                shutil.rmtree(self.mlflow_store)  # a real folder; a link inside it is removed, never followed
        make_folder(self.cells, run=self.root)

    # -- lock -----------------------------------------------------------------------------------
    def lock(self) -> None:
        """Hold the folder for this process; a second ``bench run`` on it exits 2 naming the holder."""
        import fcntl

        fd = open_regular(self.lock_file, run=self.root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise BenchError(f"{self.root}: is in use by {holder}; wait for it to finish or stop it, "
                             "or use --out for another folder") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"bench pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%H:%M:%S')} ({' '.join(sys.argv[:3])[:120]})".encode(), 0)
        except OSError as exc:
            os.close(fd)
            if is_disk_full(exc):
                raise DiskFull(self.lock_file) from exc
            raise
        self._lock_fd = fd
        own(self.root)  # the lock holder writes the folder's own files (bench.io refuses other writers)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            disown(self.root)
            os.close(self._lock_fd)  # closing releases the flock; the file stays (it is ours)
            self._lock_fd = None

    @contextmanager
    def locked(self) -> Iterator[RunDir]:
        self.lock()
        try:
            yield self
        finally:
            self.unlock()

    # -- reading: the one loader ----------------------------------------------------------------
    def read_config(self) -> str | None:
        """The stored resolved config's text, None when absent; exit 2 when it is not readable text."""
        p = self.config
        if not p.exists():
            return None
        fix = "use --restart to start over, or --out for a new folder"
        if not p.is_file():
            raise DamagedFile(f"{p}: is not a file; move it away, then {fix}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DamagedFile(f"{p}: is unreadable ({first_line(exc, 200)}); {fix}") from None
        try:
            data = safe_load(text)
        except Exception as exc:  # YAMLError, RecursionError
            raise DamagedFile(f"{p}: is not valid YAML ({first_line(exc, 200)}); {fix}") from None
        if not isinstance(data, dict):
            raise DamagedFile(f"{p}: is a {type(data).__name__}, not a study's resolved config; {fix}")
        return text

    def load_cell(self, cid: str) -> Any:
        """The cell's record (``bench.results.Cell``) after checking its npz opens; DamagedFile if not."""
        cell = self.read_cell(cid)
        self.load_arrays(cid)
        return cell

    def read_cell(self, cid: str) -> Any:
        """The cell's record (``bench.results.Cell``) from its json alone; DamagedFile if it does not validate."""
        path = self.cell_json(cid)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cell = Cell.model_validate(data)
            if cell.id != cid:
                raise ValueError(f"holds cell {cell.id!r}")
        except Exception as exc:
            raise DamagedFile(f"{path}: is damaged ({first_line(exc, 200)}); delete it to recompute the cell, "
                              "or use --restart") from None
        return cell

    def load_arrays(self, cid: str) -> dict[str, np.ndarray]:
        """Every array of the cell's npz (statistics and bootstrap replicates), read in full."""
        path = self.cell_npz(cid)
        try:  # our own file handle: np.load leaves its own open when a garbage file makes it raise
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:
            raise DamagedFile(f"{path}: is damaged ({first_line(exc, 200)}); delete it to recompute the cell, "
                              "or use --restart") from None

    def load_results(self) -> Any:
        """``results.json`` checked against its schema (``bench.results.load_results``: one line if not)."""
        return load_results(self.results)

    def cell_state(self, cid: str) -> str:
        """'done', 'missing' or a one-line reason the cell's files are damaged (it will be recomputed)."""
        for p in (self.cell_json(cid), self.cell_npz(cid), self.checkpoint(cid)):
            if p.exists() and not p.is_file():  # not bench's: it is never removed, so it cannot be replaced
                raise DamagedFile(f"{p}: is not a file (bench writes a file here); move it away and run again")
        if not self.cell_json(cid).exists() and not self.cell_npz(cid).exists():
            return "missing"
        if not (self.cell_json(cid).exists() and self.cell_npz(cid).exists()):
            return "missing"  # a worker died between the two writes
        try:
            self.load_cell(cid)
        except DamagedFile as exc:
            return str(exc).split("; delete it")[0]
        return "done"

    def load_checkpoint(self, cid: str, device: Any) -> dict | None:
        """An epoch checkpoint to resume from, or None: absent, or damaged (then it is discarded and the
        cell retrains from scratch, which gives the same numbers). Never unpickles code."""
        import torch

        path = self.checkpoint(cid)
        if not path.exists():
            return None
        try:
            with warnings.catch_warnings():  # torch's notes on odd pickles: the one line below says it all
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location=device, weights_only=True)
            if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "rng", "step"} <= set(state):
                raise ValueError("not an epoch checkpoint")
            int(state["step"])
            return state
        except Exception as exc:
            print(f"warning: {path}: is damaged ({first_line(exc, 200)}); retraining that cell from scratch", file=sys.stderr)
            path.unlink(missing_ok=True)
            return None

    def discard_checkpoint(self, cid: str) -> None:
        """Remove the cell's epoch checkpoint (bench's own file): the cell is recomputed from scratch."""
        self.checkpoint(cid).unlink(missing_ok=True)

    # -- writing (atomic) -----------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        write_text(self.config, text, run=self.root)


def _lmode(path: Path) -> int | None:
    """The file mode of ``path`` itself (a link is not followed), None when absent."""
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None
