"""Standard output and error on any terminal: an ASCII console, a closed pipe, a full disk.

- ``ascii_fallback``: a stream whose encoding cannot write bench's typography (``—``, ``±``, ``×``, ``→``,
  ...; ``PYTHONIOENCODING=ascii``, a Latin-1 console, some Slurm setups) gets the ``bench.ascii`` error
  handler, so the typography it cannot encode is spelled in ASCII (``--``, ``+/-``, ``x``, ``->``), an
  accented letter loses its accent, and anything else becomes a ``\\uXXXX`` escape. UTF-8 is untouched.
- ``guard``: sys.stdout and sys.stderr raise ``OutputError`` (naming the stream) when a write fails (EPIPE,
  ENOSPC, EBADF, EIO, a quota, ...), so the CLI can tell "the reader left" or "the disk is full" from an
  OSError of a file, and end silently or in one line.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import sys
import unicodedata
from collections.abc import Iterator
from typing import Any, TextIO

HANDLER = "bench.ascii"

ASCII = {
    "—": "--", "–": "-", "−": "-", "‐": "-", "‑": "-", "±": "+/-", "×": "x", "÷": "/", "·": "-", "•": "*",
    "…": "...", "→": "->", "←": "<-", "↔": "<->", "⇒": "=>", "↳": "->", "≤": "<=", "≥": ">=", "≠": "!=",
    "≈": "~", "∞": "inf", "√": "sqrt", "‘": "'", "’": "'", "“": '"', "”": '"', "′": "'", "″": '"', "«": "<<",
    "»": ">>", "Δ": "delta", "α": "alpha", "σ": "sigma", "µ": "u", "μ": "u", "²": "^2", "³": "^3", "°": " deg",
    "★": "*", "✓": "ok", "✔": "ok", "✗": "x", "✘": "x", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
}
TYPOGRAPHY = "".join(ASCII)

# what a failed write on a standard stream says, by errno (else the OS's words); EPIPE (the reader left): nothing
REASONS = {errno.ENOSPC: "disk full", errno.EBADF: "not open", errno.EIO: "input/output error"}


def ascii_spelling(char: str) -> str:
    """The ASCII a reader expects for one character: its typographic equivalent, its base letter, or an escape."""
    if char in ASCII:
        return ASCII[char]
    if 0xDC80 <= ord(char) <= 0xDCFF:  # an undecodable byte kept by surrogateescape (a file name): escape it
        return f"\\x{ord(char) - 0xDC00:02x}"
    base = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    return base or char.encode("ascii", "backslashreplace").decode()


def degrade(exc: UnicodeError) -> tuple[str, int]:
    """The ``bench.ascii`` codecs error handler: one character at a time, so each gets its own spelling."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return ascii_spelling(exc.object[exc.start]), exc.start + 1


codecs.register_error(HANDLER, degrade)


def encodes(encoding: str | None, text: str) -> bool:
    try:
        codecs.encode(text, encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def fit(text: str, stream: Any) -> str:
    """``text`` as ``stream`` can encode it (for a stream bench does not own, e.g. one handed to the progress)."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None or encodes(encoding, text):
        return text
    return codecs.encode(text, encoding, HANDLER).decode(encoding)


def needs_fallback(stream: Any) -> bool:
    """A text stream that would raise on bench's typography: its encoding cannot write it and its errors would."""
    return (hasattr(stream, "reconfigure") and getattr(stream, "errors", None) in ("strict", "surrogateescape")
            and not encodes(stream.encoding, TYPOGRAPHY))


@contextlib.contextmanager
def ascii_fallback(*streams: Any) -> Iterator[None]:
    """Give each stream that needs it the ``bench.ascii`` handler; the previous handler is back afterwards."""
    changed = [(s, s.errors) for s in streams if needs_fallback(s)]
    for stream, _ in changed:
        stream.reconfigure(errors=HANDLER)
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(OSError, ValueError):  # reconfigure flushes: a broken stream stays as it is
                stream.reconfigure(errors=errors)


class OutputError(Exception):
    """A write to standard output or error failed (not an OSError: no handler of a file's errors catches it)."""

    def __init__(self, stream: str, error: OSError):
        super().__init__(f"cannot write to {stream}: {REASONS.get(error.errno or 0, error.strerror or str(error))}")
        self.stream, self.errno = stream, error.errno


class Guarded:
    """A standard stream whose failed writes raise OutputError; everything else is the stream's own."""

    def __init__(self, stream: TextIO, name: str):
        self._stream, self._name = stream, name

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputError(self._name, exc) from exc

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(self._name, exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """sys.stdout and sys.stderr guarded while the command runs; the originals are back afterwards."""
    saved = sys.stdout, sys.stderr
    # a stream closed by the shell (`2>&-`) is None in Python: output to it is dropped, as the user asked,
    # instead of every `print(..., file=sys.stderr)` and the progress display failing on None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the command
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    sys.stdout = Guarded(sys.stdout, "standard output")  # type: ignore[assignment]
    sys.stderr = Guarded(sys.stderr, "standard error")  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def flush() -> None:
    """Flush both streams now, so a failed write surfaces here and not as 'Exception ignored' at exit."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def discard(fd: int) -> None:
    """Point a broken standard stream at /dev/null, so the interpreter's last flush has somewhere to go."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def output_failed(exc: OutputError) -> int:
    """The exit for a failed write: the reader left (EPIPE): silent, 1; else one line on stderr, 2 (silent
    when stderr is what failed, or fails too)."""
    discard(1 if exc.stream == "standard output" else 2)
    if exc.errno == errno.EPIPE:
        return 1
    if exc.stream == "standard output":
        try:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        except (OutputError, OSError, ValueError):
            discard(2)
    return 2
