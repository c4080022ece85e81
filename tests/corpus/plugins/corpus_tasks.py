"""Task plugins that fail the way real data does: missing files (a BenchError), or parameters the
factory cannot build (a plain exception from inside the plugin)."""

from pathlib import Path

from bench.errors import BenchError
from bench.registry import TASKS


@TASKS.register("corpus_folder_task")
def corpus_folder_task(root: str = "/nonexistent/corpus-data"):
    """Images from a folder that must exist."""
    if not Path(root).is_dir():
        raise BenchError(f"{root}: data folder not found; set tasks.<alias>.root to the folder holding train/ and test/")
    raise AssertionError("unreachable in the corpus")


@TASKS.register("corpus_fragile_task")
def corpus_fragile_task(n: int = 4):
    """Builds nothing: its factory divides by n - 4."""
    return 1 / (n - 4)
