"""User-facing errors: the CLI turns these into one line on stderr and exit status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A user error (bad config, unknown name, missing data): one line that names the culprit and the fix."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or ''."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
