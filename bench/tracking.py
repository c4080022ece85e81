"""Optional experiment tracking (``bench run --log tensorboard``): each cell's training curves and final metrics
as TensorBoard event files inside the run folder, ``<run>/logs/<cell id>/events.out.tfevents.*``.

Offline and per cell: the process that computes a cell (the driver with ``local``, a worker otherwise) writes
that cell's own file, so no writer crosses processes. The file is bench's own: opened inside the run folder
without following a link on the way (``bench.io``), created new (never an existing name), and removed by
``--restart`` like the cells and checkpoints. What is logged never feeds back into training or results: the
choice is not part of the config (results.json and its hash are the same with or without it).

Scalars: ``train/loss`` and ``train/lr`` at every step, ``final/<metric>`` (the baseline's test metrics) and
``final/train_loss`` at the last step. Reading them: ``tensorboard --logdir <run>/logs``. The records are
TensorBoard's (TFRecord framing of ``Event`` protos), encoded with the protos of tensorboardX, the extra
``tensorboard`` (``pip install 'identity-bench[tensorboard]'``); MLflow is not supported yet.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import DiskFull, is_disk_full, parent_folder
from bench.layout import LOG_EVENTS as EVENTS

KINDS = ("tensorboard",)


def require(kind: str | None) -> None:
    """Before anything trains: ``kind`` is known and its package importable, else one line naming the extra."""
    if kind is None:
        return
    if kind not in KINDS:
        raise BenchError(f"--log {kind}: not supported; give one of {', '.join(KINDS)}")
    try:
        _protos()
    except ImportError:
        raise BenchError("--log tensorboard: needs the package tensorboardX, which is not installed here; install "
                         "the extra: pip install 'identity-bench[tensorboard]'") from None


def _protos() -> tuple[Any, Any, Any]:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.record_writer import masked_crc32c

    return Event, Summary, masked_crc32c


class EventLog:
    """One cell's TensorBoard event file, written as it trains (buffered, flushed every few seconds)."""

    def __init__(self, run: str | Path, folder: Path, fresh: bool):
        self.Event, self.Summary, self.crc = _protos()
        self.run, self.folder = Path(os.path.abspath(run)), Path(os.path.abspath(folder))
        self.path = self.folder / f"{EVENTS}{int(time.time())}.{socket.gethostname()}.{os.getpid()}.bench"
        self._buffer: list[bytes] = []
        self._flushed = time.monotonic()
        with parent_folder(self.path, self.run) as dfd:  # inside the run folder, no link followed on the way
            if fresh:  # a cell trained from scratch: an earlier attempt's curves would overlap its own
                for name in os.listdir(dfd):
                    if name.startswith(EVENTS) and stat.S_ISREG(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                        os.unlink(name, dir_fd=dfd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_APPEND
            try:
                self.fd = os.open(self.path.name, flags, 0o644, dir_fd=dfd)
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFull(self.path) from exc
                raise
        self._add(self.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = self.Summary(value=[self.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
        self._add(self.Event(wall_time=time.time(), step=int(step), summary=summary))
        if time.monotonic() - self._flushed > 2.0:
            self.flush()

    def _add(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._buffer.append(header + struct.pack("<I", self.crc(header)) + data + struct.pack("<I", self.crc(data)))

    def flush(self) -> None:
        data, self._buffer, self._flushed = b"".join(self._buffer), [], time.monotonic()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(self.path) from exc
            raise

    def close(self) -> None:
        if self.fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self.fd)
            self.fd = -1


def open_log(kind: str | None, run: str | Path, folder: Path, fresh: bool) -> EventLog | None:
    """The cell's log for ``--log kind`` (None: no tracking)."""
    if kind is None:
        return None
    require(kind)
    return EventLog(run, folder, fresh)


def numbers(values: dict[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of ``values`` as scalars named ``prefix<key>``."""
    return {f"{prefix}{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}
