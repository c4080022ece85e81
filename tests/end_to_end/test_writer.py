"""One writer (issue 23): every file bench writes is a regular file it replaces atomically, and every error
knowable before a run starts is found before its folder is claimed.

- ``--out`` a FIFO or a character device (``bench run`` and ``bench leaderboard``): exit 2, one line, the
  node unchanged (as root, a replaced /dev/null would break the machine).
- A link at the final component is refused, never written through nor replaced; a link inside a run
  folder (its ``cells/``, a figure, its lock: tests/corpus/run_folders/cases.yaml) likewise.
- Another command never writes a run folder's own files (``leaderboard --out RUN/results.json``).
- ``--out ''``, ``--out RUN/cells``, ``--executor slurm`` without Slurm, ``--executor ray`` without Ray: one line
  and nothing created at ``--out``.
- A full disk (a tiny tmpfs; skipped where mount is not permitted) during cell writes or while assembling
  results.json: one line ``disk full: ...``, the earlier results.json intact, finished cells kept.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import bench
import bench.executors
import bench.io
from bench.cli import main
from bench.errors import BenchError
from bench.io import DiskFull, atomic_write, owning, write_bytes, write_text
from tests.end_to_end.test_run_folder import STUDY
from tests.helpers import one_torch_thread

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "reports" / "quickstart"


def one_line(capsys, code: int, expect: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert expect in err, err
    return err


def node(path: Path) -> tuple:
    """What identifies a file system node without opening it (a FIFO would block, a device be read)."""
    st = os.lstat(path)
    return st.st_ino, st.st_mode, st.st_rdev, st.st_size, st.st_mtime_ns


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture
def run_copy(tmp_path) -> Path:
    """A run folder of bench's (the committed quickstart report: marker, results.json, cells)."""
    out = tmp_path / "quickstart"
    shutil.copytree(QUICKSTART, out)
    return out


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def chardev(path: Path) -> Path:
    """A character device like /dev/null (1, 3), made in a temp folder."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError as exc:
        pytest.skip(f"mknod is not permitted here ({exc}); the FIFO cases cover the same check")
    return path


NODES = {"fifo": (fifo, "FIFO (named pipe)"), "chardev": (chardev, "character device")}


# -- --out a FIFO or a device ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(NODES))
def test_run_out_a_device_or_fifo_is_refused(kind, config, tmp_path, capsys):
    make, what = NODES[kind]
    out = make(tmp_path / "out")
    before = node(out)
    code = main(["run", str(config), "--out", str(out), "--quiet"])
    one_line(capsys, code, f"--out {out}: cannot write the run folder there (it is a {what}); give a folder")
    assert node(out) == before


@pytest.mark.parametrize("kind", sorted(NODES))
def test_leaderboard_out_a_device_or_fifo_is_refused(kind, run_copy, tmp_path, capsys):
    make, what = NODES[kind]
    out = make(tmp_path / "board.md")
    before = node(out)
    code = main(["leaderboard", str(run_copy), "--out", str(out)])
    one_line(capsys, code, f"{out}: is a {what}, not a regular file; bench writes only regular files")
    assert node(out) == before


def test_leaderboard_out_a_link_is_refused_and_both_kept(run_copy, tmp_path, capsys):
    mine = tmp_path / "mine.md"
    mine.write_text("the user's\n")
    link = tmp_path / "board.md"
    link.symlink_to(mine)
    code = main(["leaderboard", str(run_copy), "--out", str(link)])
    one_line(capsys, code, f"{link}: is a symbolic link; bench does not write through links")
    assert mine.read_text() == "the user's\n" and link.is_symlink() and os.readlink(link) == str(mine)


@pytest.mark.parametrize("own", ["results.json", "report.md", "config.resolved.yaml", ".bench-run", ".bench.lock",
                                 "cells/notes.csv", "checkpoints/x.pt", "block_lesion.png", "verdict.png",
                                 "new_figure.svg"])
def test_leaderboard_never_writes_a_run_folders_own_files(own, run_copy, capsys):
    before = digest(run_copy)
    code = main(["leaderboard", str(run_copy), "--out", str(run_copy / own)])
    one_line(capsys, code, f"{run_copy / own}: is among the run folder {run_copy}'s own files "
                           f"({own.split('/')[0]}); only `bench run` on that folder writes them")
    assert digest(run_copy) == before


def test_a_hard_linked_lock_is_refused_and_the_other_file_untouched(config, tmp_path, capsys):
    """The lock is the one file bench writes in place (it is locked, never replaced): a second name for a
    user's file there would carry bench's writes into it."""
    out = tmp_path / "run"
    with one_torch_thread():
        assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("mine\n")
    (out / ".bench.lock").unlink()
    os.link(precious, out / ".bench.lock")
    with one_torch_thread():
        code = main(["run", str(config), "--out", str(out), "--quiet"])
    one_line(capsys, code, f"{out / '.bench.lock'}: is a hard link (2 names for one file); bench writes in place")
    assert precious.read_text() == "mine\n"


def test_bench_bench_out_is_checked_before_the_benchmarks_run(run_copy, tmp_path, capsys):
    code = main(["bench", "-k", "nothing", "--out", str(run_copy / "cells")])
    one_line(capsys, code, "is inside the run folder")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_line(capsys, main(["bench", "-k", "nothing", "--out", str(fifo)]), "cannot write the run folder there")


def test_leaderboard_may_write_beside_a_runs_files(run_copy, capsys):
    assert main(["leaderboard", str(run_copy), "--out", str(run_copy / "leaderboard.md")]) == 0
    assert (run_copy / "leaderboard.md").stat().st_size > 0


# -- --out checked before anything is written -------------------------------------------------------
def test_out_empty_is_refused_before_anything_is_written(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = digest(tmp_path)
    with pytest.raises(BenchError, match=r"^--out '': empty path \(an unset shell variable\?\); give a folder$"):
        bench.run(config, out="")
    assert digest(tmp_path) == before


def test_out_empty_on_the_command_line_is_refused_too(config, tmp_path, monkeypatch, capsys):
    """argparse's Path('') is '.': the CLI keeps the string, so an unset shell variable is named, not run here."""
    monkeypatch.chdir(tmp_path)
    before = digest(tmp_path)
    assert main(["run", str(config), "--out", "", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "error: --out '': empty path (an unset shell variable?); give a folder"
    assert digest(tmp_path) == before


@pytest.mark.parametrize("inside", ["cells", "checkpoints/run", ".bench-run"])
def test_out_inside_another_runs_own_files_is_refused(inside, config, run_copy, capsys):
    before = digest(run_copy)
    code = main(["run", str(config), "--out", str(run_copy / inside), "--quiet"])
    expect = (f"is inside the run folder {run_copy}'s own files" if inside != ".bench-run"
              else "cannot write the run folder there (it is a file)")
    one_line(capsys, code, expect)
    assert digest(run_copy) == before


EXECUTORS = {  # what is missing -> (--executor, the one line)
    "slurm-commands": ("slurm", "--executor slurm: sbatch and srun not found on PATH (no Slurm on this machine)"),
    "submitit": ("slurm", "--executor slurm: submitit is not installed; pip install 'identity-bench[slurm]'"),
    "ray": ("ray", "--executor ray: Ray is not installed; pip install 'identity-bench[ray]'"),
}


@pytest.mark.parametrize("missing", sorted(EXECUTORS))
def test_a_missing_executor_is_one_line_and_nothing_is_created(missing, config, tmp_path, monkeypatch, capsys):
    kind, expect = EXECUTORS[missing]
    monkeypatch.setattr(bench.executors, "which", lambda cmd: None if missing == "slurm-commands" else f"/bin/{cmd}")
    # every other piece present, whatever extras this venv has: the line must name the one missing
    monkeypatch.setattr(bench.executors, "installed", lambda module: module != missing)
    out = tmp_path / "run"
    before = digest(tmp_path)
    code = main(["run", str(config), "--out", str(out), "--quiet", "--executor", kind])
    one_line(capsys, code, expect)
    assert not out.exists() and digest(tmp_path) == before


# -- the writer itself -------------------------------------------------------------------------------
def test_a_link_at_the_final_component_is_refused_not_replaced(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's")
    link = tmp_path / "out.txt"
    link.symlink_to(mine)
    with pytest.raises(BenchError, match="is a symbolic link; bench does not write through links"):
        write_text(link, "bench's")
    assert mine.read_text() == "the user's" and link.is_symlink()


def test_a_folder_at_the_path_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(BenchError, match=r"d: is a folder, not a regular file"):
        write_text(tmp_path / "d", "x")


def test_a_linked_folder_inside_a_run_folder_is_never_followed(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (run / ".bench-run").write_text("{}")
    (run / "cells").symlink_to(outside)
    with owning(run), pytest.raises(BenchError, match=r"cells: is a symbolic link; bench writes only real folders "
                                                      r"inside its run folder: move it away"):
        write_text(run / "cells" / "a.json", "{}")
    assert list(outside.iterdir()) == []


def test_a_full_disk_is_one_line_the_old_file_intact_no_temp_left(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("earlier")

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bench.io.os, "write", full)
    with pytest.raises(DiskFull, match=r"^disk full: .*results.json; free space and run the same command again "
                                       r"\(finished cells are kept\)$"):
        write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_atomic_write_renders_in_memory_first(tmp_path):
    """A failing render (torch.save, np.savez) never touches the disk: the old file stays, no temp file."""
    target = tmp_path / "x.pt"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom, mode="wb")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- a full disk, for real: a tiny tmpfs -------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def run_on(config: Path, out: Path) -> int:
    with one_torch_thread():
        return main(["run", str(config), "--out", str(out), "--quiet"])


def test_disk_full_during_cell_writes_is_one_line(tiny_disk, config, capsys):
    out = tiny_disk / "run"
    fill(tiny_disk, 16 * 1024)  # the marker, the lock and the config fit; a checkpoint or a cell does not
    code = run_on(config, out)
    err = one_line(capsys, code, f"disk full: {out / 'checkpoints'}")  # the first write of a cell: its checkpoint
    assert err.endswith("; free space and run the same command again (finished cells are kept)\n"), err
    assert not [p for p in out.rglob("*.tmp")], "a temp file of a failed write was left"


def test_disk_full_while_assembling_results_keeps_results_and_cells(tiny_disk, config, capsys):
    out = tiny_disk / "run"
    assert run_on(config, out) == 0
    capsys.readouterr()
    results, cells = (out / "results.json").read_bytes(), digest(out / "cells")
    assert len(results) > 8192
    fill(tiny_disk, 8 * 1024)  # the config is rewritten in place of itself; results.json needs more
    code = run_on(config, out)
    one_line(capsys, code, f"disk full: {out / 'results.json'}; free space and run the same command again "
                           "(finished cells are kept)")
    assert (out / "results.json").read_bytes() == results and digest(out / "cells") == cells
    assert not [p for p in out.rglob("*.tmp")]
    (tiny_disk / "filler").unlink()
    assert run_on(config, out) == 0  # freed: the same command finishes, every cell kept as it was
    assert digest(out / "cells") == cells
