"""The one writer: every file bench writes is a regular file, either absent or complete (temp, fsync, rename).

Why one function: bench often runs as root on shared GPU boxes, so a write must never replace what is not
a file (``--out /dev/null`` would replace the machine's /dev/null), never follow a symbolic link (a link
named like one of bench's files would make it truncate the user's file), and never overwrite a run
folder's own files from another command (``bench leaderboard --out RUN/results.json``). Content is
rendered in memory first, so the only failing steps touch the disk and a full one is named as such
(torch.save streaming into a full disk reports 'unexpected pos 64 vs 0' instead).

A run folder is found by its marker (``bench.layout.MARKER``) or because this process writes it (it holds the
folder's lock, or computes its cells: ``owning``). Inside one, every folder on the way is opened without
following links, and the run's own names (``RUN_FILES``) are written only by its owner.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.layout import MARKER, is_run_file

FULL = (errno.ENOSPC, errno.EDQUOT)

_owned: dict[str, int] = {}  # realpath of a run folder this process writes -> how many holders


class DiskFull(BenchError):
    """No space (or quota) left: the temp file is removed, the old file intact, finished cells kept."""

    def __init__(self, path: str | Path):
        super().__init__(f"disk full: {path}; free space and run the same command again (finished cells are kept)")


# -- ownership -----------------------------------------------------------------------------------
def own(root: str | Path) -> None:
    """This process writes the run folder ``root`` (it holds its lock, or computes cells for the holder)."""
    key = os.path.realpath(root)
    _owned[key] = _owned.get(key, 0) + 1


def disown(root: str | Path) -> None:
    key = os.path.realpath(root)
    if _owned.get(key, 0) <= 1:
        _owned.pop(key, None)
    else:
        _owned[key] -= 1


@contextmanager
def owning(root: str | Path) -> Iterator[None]:
    own(root)
    try:
        yield
    finally:
        disown(root)


def run_folder_of(path: str | Path) -> tuple[Path, bool] | None:
    """(the nearest run folder above ``path``, whether this process owns it), or None. Lexical: a link above
    the run folder is the user's business, a link inside it is never followed."""
    for parent in Path(os.path.abspath(path)).parents:
        if os.path.realpath(parent) in _owned:
            return parent, True
        try:
            if stat.S_ISREG(os.lstat(parent / MARKER).st_mode):
                return parent, False
        except OSError:
            continue
    return None


# -- the writer ----------------------------------------------------------------------------------
def write_bytes(path: str | Path, data: bytes, *, run: str | Path | None = None) -> None:
    """Replace ``path`` by a regular file holding ``data``; ``run``: the run folder this write belongs to
    (its owner writing its own files). BenchError (one line) for a link, a device, a FIFO, a folder, a run
    folder's own file written from another command, or a full disk."""
    path = Path(os.path.abspath(path))
    with parent_folder(path, run) as dfd:
        check_target(dfd, path)
        _replace(dfd, path, data)


def write_text(path: str | Path, text: str, *, run: str | Path | None = None) -> None:
    write_bytes(path, text.encode("utf-8"), run=run)


def write_json(path: str | Path, data: Any, *, run: str | Path | None = None) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False), run=run)


def save_npz(path: str | Path, *, run: str | Path | None = None, **arrays: Any) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue(), run=run)


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "w", *,
                 run: str | Path | None = None) -> None:
    """``write(f)`` into memory (a text or, with mode 'wb', a binary buffer), then ``write_bytes``."""
    buf: Any = io.BytesIO() if "b" in mode else io.StringIO()
    write(buf)
    data = buf.getvalue()
    write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"), run=run)


def open_regular(path: str | Path, *, run: str | Path | None = None) -> int:
    """A read-write descriptor of the regular file ``path`` (created if absent), under the writer's checks:
    what a lock file needs (it is locked in place, never replaced)."""
    path = Path(os.path.abspath(path))
    with parent_folder(path, run) as dfd:
        check_target(dfd, path)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path.name, flags, 0o644, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in FULL:
                raise DiskFull(path) from exc
            check_target(dfd, path)  # replaced meanwhile by a link or a device: say so
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            check_target(dfd, path)
        if st.st_nlink > 1:  # written in place (a lock): a hard link would carry bench's writes into another file
            os.close(fd)
            raise BenchError(f"{path}: is a hard link ({st.st_nlink} names for one file); bench writes in place only "
                             "files it owns: remove this name and run again")
        return fd


def make_folder(path: str | Path, *, run: str | Path | None = None) -> None:
    """Create the folder ``path`` (and its parents), refusing a link on the way inside a run folder."""
    path = Path(os.path.abspath(path))
    with parent_folder(path / "_", run):
        pass


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a full disk or quota."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in FULL:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# -- the steps -----------------------------------------------------------------------------------
KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
         (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"))


def kind_of(mode: int) -> str:
    """'folder', 'character device', ... for a file mode that is not a regular file."""
    return next((name for test, name in KINDS if test(mode)), "special file")


def check_target(dfd: int, path: Path) -> None:
    """Refuse an existing final component that is a link or not a regular file (never opened: a FIFO
    would block, a device would be written)."""
    try:
        mode = os.stat(path.name, dir_fd=dfd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise BenchError(f"{path}: is a symbolic link; bench does not write through links (what it points to "
                         "is left as it is): remove the link or choose another path")
    if not stat.S_ISREG(mode):
        raise BenchError(f"{path}: is a {kind_of(mode)}, not a regular file; bench writes only regular files: "
                         "choose another path")


@contextmanager
def parent_folder(path: Path, run: str | Path | None) -> Iterator[int]:
    """A descriptor of ``path``'s folder, created if missing. Inside a run folder every folder below it is
    opened without following links, and another command may not write the run's own entries."""
    found = (Path(os.path.abspath(run)), True) if run is not None else run_folder_of(path)
    if found is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        root, owner = found
        parts = path.relative_to(root).parts
        if not owner and is_run_file(parts[0], top=len(parts) == 1):
            raise BenchError(f"{path}: is among the run folder {root}'s own files ({parts[0]}); only `bench run` "
                             "on that folder writes them: choose another path")
        dfd = _walk(root, parts[:-1])
    try:
        yield dfd
    finally:
        os.close(dfd)


def _walk(root: Path, folders: tuple[str, ...]) -> int:
    """Open ``root`` then each of ``folders`` below it (created if missing) without following a link."""
    root.mkdir(parents=True, exist_ok=True)
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where = root
    try:
        for name in folders:
            where = where / name
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                nfd = os.open(name, flags, dir_fd=dfd)
            except FileNotFoundError:
                _mkdir(name, dfd, where)
                nfd = os.open(name, flags, dir_fd=dfd)
            except OSError:
                mode = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):  # a real folder bench may not open (permissions): the OSError says so
                    raise
                if stat.S_ISLNK(mode):
                    raise BenchError(f"{where}: is a symbolic link; bench writes only real folders inside its run "
                                     "folder: move it away") from None
                raise BenchError(f"{where}: is a {kind_of(mode)}, not a folder; move it away") from None
            os.close(dfd)
            dfd = nfd
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def _mkdir(name: str, dfd: int, where: Path) -> None:
    try:
        os.mkdir(name, 0o777, dir_fd=dfd)
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno in FULL:
            raise DiskFull(where) from exc
        raise


def _replace(dfd: int, path: Path, data: bytes) -> None:
    """Write a temp file beside ``path`` (named as ``RunDir.stale_temporaries`` recognises), fsync, rename."""
    tmp, fd, created = f".{path.name}.{secrets.token_hex(4)}.tmp", -1, False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
        created = True
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        if created:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
        if is_disk_full(exc):
            raise DiskFull(path) from exc
        raise
