"""Shared file handling for task plugins: data roots, archive extraction, checksums, downloads.

Relative data paths are resolved against the current working directory (run bench from the repository
root, as the README does). Archives (.tar, .tar.gz, .tgz) are extracted once into a cache outside the
repository — ``$BENCH_DATA_CACHE`` or ``<system temp>/bench-data`` — atomically (extract to a temporary
folder, then rename), keyed by the archive's name, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
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


def extracted(archive: Path) -> Path:
    """Folder holding the archive's contents (extracted on first use)."""
    st = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]
    dest = cache_dir() / f"{archive.name.split('.')[0]}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"{archive}: cannot extract ({type(exc).__name__}: {exc}); the archive is truncated or "
                         "corrupt: download it again") from None
    return dest


def data_root(root: str, what: str, fix: str) -> Path:
    """An existing folder for ``root`` (extracting archives), or a one-line error saying how to get it."""
    path = Path(root).expanduser()
    if is_archive(path):
        return extracted(path)
    if not path.is_dir():
        raise BenchError(f"{path}: {what} not found (resolved against {Path.cwd()}); {fix}")
    return path


def download(url: str, dest: Path, md5: str) -> Path:
    """Download ``url`` to ``dest`` (atomically) and verify its published MD5 before anything uses it."""
    if dest.is_file():
        verify_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BenchError(f"download of {url} failed ({exc}); download it by hand into {dest.parent}") from None
    verify_md5(tmp, md5)
    os.replace(tmp, dest)
    return dest


def only_subfolder(path: Path, name: str) -> Path:
    """Step into ``path/name`` when an archive wraps its contents in one folder."""
    return path / name if (path / name).is_dir() else path
