"""User-facing errors: the CLI turns these into one line on stderr and exit status 2."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class BenchError(Exception):
    """A user error (bad config, unknown name, missing data): one line that names the culprit and the fix."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """'ExceptionType: first line of its message', cut to `limit` characters: an exception inside a one-line error.

    The message is stripped first, so a leading blank line does not hide it; an empty message leaves 'Type: '.
    """
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:limit]


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or ''."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


WORKER = re.compile(r"in DataLoader worker process \d+")


def worker_error(text: str) -> str | None:
    """'Type: message' of the original exception inside a DataLoader worker's flattened traceback."""
    if not WORKER.search(text) or "Original Traceback" not in text:
        return None
    body = text.split("Original Traceback (most recent call last):", 1)[1].splitlines()
    tail = [line for line in body if line.strip()]
    start = next((i for i in range(len(tail) - 1, -1, -1) if tail[i].startswith("  File ")), -1)
    lines = tail[start + 1:]
    while lines and lines[0].startswith(" "):  # the source line (and ^^^ markers) under the last `File ...`
        lines = lines[1:]
    exc_type, _, message = " ".join(lines).partition(": ")
    exc_type = exc_type.strip().rsplit(".", 1)[-1]
    return message.strip() if exc_type == "BenchError" else f"{exc_type}: {message.strip()}"
