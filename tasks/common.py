"""Shared file handling for task plugins: data roots, archive extraction, checksums, downloads.

Relative data paths (``root``) are resolved against the current working directory, not the config
file: run bench from the repository root, as the README does, and the shipped configs' ``../shared/data``
and ``data`` paths mean the same thing for every config. Errors print the absolute path. Archives (.tar, .tar.gz, .tgz) are extracted once into a cache outside the
repository — ``$BENCH_DATA_CACHE`` or ``<system temp>/bench-data`` — atomically (extract to a temporary
folder, then rename), keyed by the archive's name, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

from bench.errors import BenchError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_DATA_CACHE") or Path(tempfile.gettempdir()) / "bench-data")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    got = md5sum(path)
    if got != expected:
        raise BenchError(f"{path}: MD5 {got} does not match the published {expected}; the file is corrupt or "
                         "incomplete: delete it and download again")


def absolute(root: str | Path) -> Path:
    """``root`` made absolute against the working directory (so error messages say exactly where)."""
    return Path(os.path.abspath(Path(root).expanduser()))


def extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``; a truncated or corrupt archive is a one-line error naming it.

    Members are extracted with tarfile's ``data`` filter (no absolute paths, links out of ``dest``, devices).
    """
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise BenchError(f"{archive}: cannot extract ({type(exc).__name__}: {exc}); the archive is truncated or "
                         "corrupt: download it again") from None


def extracted(archive: Path) -> Path:
    """Folder holding the archive's contents (extracted on first use, atomically, into the cache)."""
    st = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]
    dest = cache_dir() / f"{archive.name.split('.')[0]}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        extract(archive, tmp)
        os.replace(tmp, dest)
    except OSError:
        if not dest.is_dir():  # losing a race with a concurrent run that extracted the same archive is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def data_root(root: str, what: str, fix: str) -> Path:
    """An existing folder for ``root`` (extracting archives), or a one-line error saying how to get it."""
    path = absolute(root)
    if is_archive(path):
        return extracted(path)
    if not path.is_dir():
        raise BenchError(f"{path}: {what} not found (relative paths resolve against the working directory); {fix}")
    return path


def download(url: str, dest: Path, md5: str, by_hand: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its published MD5 before anything uses it.

    A file already at ``dest`` is verified, not downloaded again. A download whose checksum does not
    match is deleted, never left where a later run would pick it up. ``by_hand``: what a failed download
    (no network) tells the user to place where instead (default: the file, into ``dest``'s folder).
    """
    if dest.is_file():
        verify_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
        verify_md5(tmp, md5)
        os.replace(tmp, dest)
    except OSError as exc:
        fix = by_hand or f"download it by hand into {dest.parent} (the file as-is: {dest.name})"
        raise BenchError(f"download of {url} failed ({exc}); {fix}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def release(url: str, md5: str, base: Path, download_ok: bool, by_hand: str | None = None) -> bool:
    """Extract the official release archive into ``base``: downloaded when ``download_ok``, else one already
    sitting in ``base``. The MD5 is verified BEFORE extraction. False when there is no archive to use.
    ``by_hand``: what a failed download says to place where (``download``)."""
    archive = base / url.rsplit("/", 1)[1]
    if download_ok:
        download(url, archive, md5, by_hand)
    elif archive.is_file():
        verify_md5(archive, md5)
    else:
        return False
    extract(archive, base)
    return True


def cpu_cores() -> int:
    """The cores this process may use (its CPU affinity where the platform has one, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


_CAPPED: set[tuple[str, int, int]] = set()


def capped_workers(workers: int, where: str) -> int:
    """``workers`` DataLoader processes, at most the cores here: more only contend, and torch warns once per
    loader. A cap is said in one note on stderr (once per task and count), not in torch's repeated warnings."""
    cores = cpu_cores()
    if workers <= cores:
        return workers
    if (where, workers, cores) not in _CAPPED:
        _CAPPED.add((where, workers, cores))
        print(f"note: {where}: workers {workers} > {cores} CPU core(s) here; using {cores}", file=sys.stderr)
    return cores


def only_subfolder(path: Path, name: str) -> Path:
    """Step into ``path/name`` when an archive wraps its contents in one folder."""
    return path / name if (path / name).is_dir() else path


def first(items, n: int | None, key: str):
    """The first ``n`` items (all when ``n`` is None); ``n`` < 1 is a one-line error naming the parameter."""
    if n is not None and n < 1:
        raise BenchError(f"{key}: {n} must be a positive number of images, or null for all; fix it")
    return items[:n]
