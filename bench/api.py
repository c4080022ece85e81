"""The library API: run a study and load its results from Python; the CLI is a thin layer over it.

    import bench

    if __name__ == "__main__":  # needed where a config runs cells in a process pool (executor: processes)
        results = bench.run("configs/quickstart.yaml", seeds=[0, 1], train={"epochs": 1})
        print(results.verdict.headline.verdict)
        again = bench.load("reports/quickstart")   # any run folder, or its results.json

As lm-evaluation-harness's ``simple_evaluate``: what ``bench run`` does, with overrides as keyword
arguments. A keyword is a ``--set`` override of that key; a mapping sets its keys one by one
(``train={"epochs": 1}`` is ``--set train.epochs=1``: the other training keys keep their values).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.cell import writer
from bench.driver import Options, run_study
from bench.errors import BenchError
from bench.executors import Executor, make_executor
from bench.failures import translate
from bench.io import DiskFull, kind_of, run_folder_of
from bench.layout import RUN_FILES
from bench.plan import Plan
from bench.results import Results, load_results
from bench.rundir import RunDir
from bench.tracking import require as require_log


def run(config: str | Path, *, out: str | Path | None = None, restart: bool = False,
        executor: Executor | str | None = None, workers: int | None = None, address: str | None = None,
        plugins: Sequence[str] = (), progress: bool = False, set_options: Sequence[str] = (),
        log: str | None = None, **overrides: Any) -> Results | None:
    """Run (or resume) the study ``config`` describes; its ``Results`` (also in ``<out>/results.json``).
    Under torchrun only rank 0 writes and gets them; the other ranks get None.

    overrides: config keys (module docstring); set_options: ``key.path=value`` strings as ``--set`` takes them
    (the way to set the config keys named like this function's own keywords: ``executor.*``, ``plugins``).
    executor: an ``Executor`` or a kind (local, processes, ray, slurm; default the config's ``executor``),
    with ``workers`` / ``address`` as ``--workers`` / ``--address``. log: ``--log`` (``"tensorboard"``: each cell's
    curves as event files in ``<out>/logs/``; ``"mlflow"``: a run per cell in ``<out>/logs/mlflow``; not part of the
    results). A user error raises ``BenchError`` (one line naming the file or key and the fix); a failure after the
    run folder was written says how many finished cells it keeps."""
    root = run_folder(config, out=out, restart=restart, executor=executor, workers=workers, address=address,
                      plugins=plugins, progress=progress, set_options=set_options, log=log, **overrides)
    return load(root) if writer() else None


def run_folder(config: str | Path, *, out: str | Path | None = None, restart: bool = False,
               executor: Executor | str | None = None, workers: int | None = None, address: str | None = None,
               plugins: Sequence[str] = (), progress: bool = False, set_options: Sequence[str] = (),
               log: str | None = None, **overrides: Any) -> Path:
    """``run``, returning the run folder instead of its results (what ``bench run`` prints from)."""
    if workers is not None and workers < 1:
        raise BenchError(f"--workers {workers}: give 1 or more")
    require_log(log)  # a missing package: one line naming the extra, before the config is even read
    if out is not None:
        check_out(out)
    start = Path.cwd()  # relative paths mean from here, whatever a plugin's import does to the working directory
    plan = Plan.build(config, [*set_options, *as_set_options(overrides)], tuple(plugins))
    chosen = executor if isinstance(executor, Executor) else make_executor(plan.cfg.executor, executor, workers,
                                                                           address)
    rd = RunDir(start / (Path(out) if out is not None else plan.default_dir()))
    before = rd.state()
    try:
        run_study(plan, chosen, Options(out=rd.root, restart=restart, show_progress=progress, log=log))
    except (Exception, SystemExit) as exc:
        err = translate(exc)
        if err is None:  # a bug in bench: the traceback stays
            raise
        if isinstance(err, DiskFull) or str(err).startswith("disk full: "):
            raise disk_full(err) from exc
        if rd.state() != before:  # this run wrote the folder: say what it keeps
            raise BenchError(f"{err}; the run folder {rd.root} keeps its {rd.finished_cells()} finished cell(s): "
                             "fix this and run the same command to resume") from exc
        if err is exc:
            raise
        raise err from exc
    return rd.root


def disk_full(err: BenchError) -> BenchError:
    """The writer's line alone (it says the finished cells are kept), without the count of cells that failed
    on the same full disk."""
    text, kept = str(err), "(finished cells are kept)"
    return BenchError(text[: text.index(kept) + len(kept)] if kept in text else text)


def check_out(out: str | Path) -> None:
    """``--out`` checked before anything is written: not empty (an unset shell variable), not a file, device
    or FIFO, not under a file, not inside another run folder's own files (its cells/, checkpoints/, ...)."""
    if str(out) == "":
        raise BenchError("--out '': empty path (an unset shell variable?); give a folder")
    path = Path(os.path.abspath(out))
    try:
        mode = os.stat(path).st_mode  # a link to a folder is the user's way to put the run elsewhere
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # under a file (ENOTDIR), a link loop, no permission
        raise BenchError(f"--out {out}: cannot write the run folder there ({exc.strerror}); give a folder") from None
    if mode is not None and not stat.S_ISDIR(mode):
        what = "a file" if stat.S_ISREG(mode) else f"a {kind_of(mode)}"
        raise BenchError(f"--out {out}: cannot write the run folder there (it is {what}); give a folder")
    found = run_folder_of(path)
    name = path.relative_to(found[0]).parts[0] if found is not None else None
    if found is not None and name in RUN_FILES:
        raise BenchError(f"--out {out}: is inside the run folder {found[0]}'s own files ({name}); "
                         "give a folder outside them")


def load(run_dir: str | Path) -> Results:
    """A run folder's results (or a results.json path), checked against the schema."""
    return load_results(run_dir)


def as_set_options(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    """Keyword overrides as ``--set key.path=value`` items; values written as JSON, which YAML reads (so a
    string stays a string). An empty mapping sets nothing."""
    items = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            items += as_set_options(value, f"{prefix}{key}.")
            continue
        try:
            items.append(f"{prefix}{key}={json.dumps(value, default=_plain)}")
        except (TypeError, ValueError) as exc:
            raise BenchError(f"{prefix}{key}: {exc}; give numbers, strings, lists or mappings") from None
    return items


def _plain(value: Any) -> Any:
    """A path as its string, a numpy number or array as its Python value."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} is not a config value")
