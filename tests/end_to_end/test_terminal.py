"""bench on any terminal (issue 23, mechanism 4), each case in a fresh interpreter, as a user runs it.

- An ASCII or Latin-1 standard output (``PYTHONIOENCODING``; a Latin-1 console, some Slurm setups): ``run``
  and ``leaderboard`` exit 0, with the typography the stream cannot encode spelled in ASCII (``--``, ``+/-``).
- A standard output that cannot be written: a full disk (/dev/full) is exit 2 and one line on stderr; a
  reader that left (a pipe closed at its other end) is a silent exit; never a traceback, nor Python's
  "Exception ignored" at interpreter exit (hence PYTHONUNBUFFERED unset: output waits for that last flush).
- A plugin that calls os.chdir when imported moves neither a relative --out nor the next relative --plugin.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.console import ascii_fallback, fit
from tests.end_to_end.test_run_folder import STUDY

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "reports" / "quickstart"
# a second task and a verdict, so the summary has its verdict line (with its dash); still four tiny cells
VERDICT = ["--set", "tasks.cls={name: synthetic_shapes, target: image, n_train: 16, n_test: 8, image_size: 16, "
           "num_classes: 3}", "--set", "verdict={dense: seg, global: cls, ablation: skip_removal}"]
CHDIR_PLUGIN = '''"""Moves the working directory when imported, as a careless plugin might."""
import os
os.chdir(os.environ["BENCH_TEST_CHDIR_TO"])
'''


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's environment, buffered output (the exit flush is what fails), one torch thread."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PYTHONIOENCODING")}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def bench(*args: str, stdout=subprocess.PIPE, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], stdout=stdout, stderr=subprocess.PIPE,
                          cwd=cwd, env=environment(**env), timeout=300)


def no_traceback(stderr: bytes) -> None:
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text and "Exception ignored" not in text, text


@pytest.fixture
def study(tmp_path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    return path


def test_run_on_an_ascii_stdout_prints_its_summary_in_ascii(study, tmp_path):
    done = bench("run", str(study), "--out", str(tmp_path / "out"), *VERDICT, PYTHONIOENCODING="ascii")
    no_traceback(done.stderr)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode("ascii")  # every byte ASCII
    verdict = next(line for line in out.splitlines() if line.startswith("verdict:"))
    assert " -- " in verdict  # the dash (—) spelled in ASCII, the line not cut
    assert f"report: {tmp_path / 'out'}/report.md" in out
    assert (tmp_path / "out" / "results.json").is_file()
    done.stderr.decode("ascii")  # the progress lines (their ·) too


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_leaderboard_on_an_ascii_or_latin1_stdout(encoding):
    done = bench("leaderboard", str(QUICKSTART), PYTHONIOENCODING=encoding)
    no_traceback(done.stderr)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode(encoding)
    assert "| quickstart | shapes_cls | resnet | baseline | accuracy |" in out
    # what the stream can encode stays (± in Latin-1); what it cannot is spelled in ASCII (— as --)
    assert ("±" in out) == (encoding == "latin-1") and ("+/-" in out) == (encoding == "ascii")
    assert "| -- |" in out and "—" not in out


def test_a_full_disk_on_stdout_is_one_line_and_exit_2():
    with open("/dev/full", "wb") as full:
        done = bench("leaderboard", str(QUICKSTART), stdout=full)
    assert done.returncode == 2
    assert done.stderr.decode() == "error: cannot write to standard output: disk full\n"


def test_a_full_disk_on_stdout_and_stderr_is_a_silent_exit_2():
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, "-m", "bench", "leaderboard", str(QUICKSTART)], stdout=full,
                              stderr=full, cwd=ROOT, env=environment(), timeout=300)
    assert done.returncode == 2


@pytest.mark.parametrize("args", [["list", "tasks"], ["--help"]], ids=["list", "help"])
def test_a_reader_that_left_is_a_silent_exit(args):
    """`bench list | head -c 10`, deterministic: the pipe's reading end is closed before bench writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = bench(*args, stdout=write)
    finally:
        os.close(write)
    assert done.stderr == b""
    assert done.returncode == 1  # as before issue 23 (not 141: no death by SIGPIPE), --help included


def test_a_plugin_that_chdirs_at_import_moves_no_relative_path(study, tmp_path):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    (start / "plugins").mkdir(parents=True)
    elsewhere.mkdir()
    (start / "plugins" / "chdir_on_import.py").write_text(CHDIR_PLUGIN)
    (start / "study.yaml").write_text(study.read_text())
    plugin = "plugins/chdir_on_import.py"  # twice: the second is found only if anchored before the first ran
    done = bench("--plugin", plugin, "--plugin", plugin, "run", "study.yaml", "--out", "runs/moved", "--quiet",
                 cwd=start, BENCH_TEST_CHDIR_TO=str(elsewhere))
    no_traceback(done.stderr)
    assert done.returncode == 0, done.stderr.decode()
    assert (start / "runs" / "moved" / "results.json").is_file()
    assert not (elsewhere / "runs").exists()


def test_a_plugin_listed_in_the_config_that_chdirs_moves_no_default_run_folder(study, tmp_path):
    """Without --out the run folder is reports/runs/... from where bench started, even when a plugin the config
    lists (imported while the config is read, after the CLI anchored its own paths) changes directory."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    (start / "chdir_on_import.py").write_text(CHDIR_PLUGIN)
    (start / "study.yaml").write_text(study.read_text() + "plugins: [chdir_on_import.py]\n")
    done = bench("run", "study.yaml", "--quiet", cwd=start, BENCH_TEST_CHDIR_TO=str(elsewhere))
    no_traceback(done.stderr)
    assert done.returncode == 0, done.stderr.decode()
    assert len(list((start / "reports" / "runs").glob("study-*/results.json"))) == 1
    assert not (elsewhere / "reports").exists()


def test_typography_is_spelled_in_ascii_and_utf8_is_left_alone():
    text = "D — 0.5 ± 0.1 × 2 → ≤ ≥ · café Δ 中"
    ascii = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    assert fit(text, ascii) == "D -- 0.5 +/- 0.1 x 2 -> <= >= - cafe delta \\u4e2d"
    latin1 = io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="strict")
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    with ascii_fallback(latin1, utf8):
        assert latin1.errors == "bench.ascii" and utf8.errors == "strict"
        print(text, file=latin1, end="")
    assert latin1.errors == "strict"  # as it was: main leaves the process's streams as it found them
    latin1.flush()
    assert latin1.buffer.getvalue().decode("latin-1") == "D -- 0.5 ± 0.1 × 2 -> <= >= · café delta \\u4e2d"


def test_a_run_with_standard_error_closed_still_runs(study, tmp_path):
    """`2>&-`: Python's sys.stderr is None; warnings and progress go nowhere, the study still runs (the folder
    was claimed and no cell trained before)."""
    done = subprocess.run([sys.executable, "-m", "bench", "run", str(study), "--out", str(tmp_path / "out")],
                          stdout=subprocess.PIPE, cwd=ROOT, env=environment(), timeout=300,  # progress on: it failed
                          preexec_fn=lambda: os.close(2))  # the child closes its own fd 2, before exec
    assert done.returncode == 0
    assert (tmp_path / "out" / "results.json").is_file()
