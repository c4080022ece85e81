"""Issue 14, classes 3-7 beyond what tests/corpus/cases.yaml can express: failures found mid-run keep the
finished cells and say so in one line; output paths that are folders; resource attacks answered fast.

Every test hashes the files bench did not create before and after: they must be byte-identical.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import worker_error
from tests.end_to_end.test_failure_corpus import CORPUS, assert_one_line, fresh_registries, hashes

PLUGIN = CORPUS / "plugins" / "misbehaving.py"
STUDY = """
name: midrun
seeds: [0, 1]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 16, n_test: 8, image_size: 16}
architectures:
  net: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 0.5, batch_size: 8}
bootstrap: 100
"""


def run(tmp_path: Path, extra: str, capsys, *flags: str) -> tuple[int, str, Path]:
    config = tmp_path / "study.yaml"
    config.write_text(STUDY + extra)
    (tmp_path / "notes.txt").write_text("the user's own notes\n")
    out = tmp_path / "run"
    before = hashes(tmp_path, CORPUS)
    with fresh_registries():
        code = main([*flags, "--plugin", str(PLUGIN), "run", str(config), "--out", str(out), "--quiet"])
    after = {k: v for k, v in hashes(tmp_path, CORPUS).items() if not k.startswith(str(out))}
    assert after == before, "a file bench did not create was changed"
    return code, capsys.readouterr().err, out


def test_a_plugin_ablation_that_raises_mid_run_is_named_and_finished_cells_are_kept(tmp_path, capsys):
    code, err, out = run(tmp_path, "ablations: [{name: corpus_flaky}]\n", capsys)
    assert_one_line(code, err, f"ablation plugin 'corpus_flaky' ({PLUGIN}) failed: ValueError: flaky broke on its "
                               "second cell; fix the plugin (--debug shows the traceback)")
    assert f"the run folder {out} keeps its 1 finished cell(s): fix this and run the same command to resume" in err
    assert [p.name for p in (out / "cells").glob("*.json")] == ["seg__net__baseline__s0.json"]


def test_a_plugin_record_that_is_not_its_declared_type_fails_the_cell_in_one_line(tmp_path, capsys):
    code, err, out = run(tmp_path, "ablations: [{name: corpus_untyped_records}]\n", capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert ("ablation corpus_untyped_records: record 0 does not match its declared DependenceRecord (key: Field "
            "required); return that type from run()") in err, err
    assert not list((out / "cells").glob("*.json"))  # nothing untyped reaches a cell file


def test_a_plugin_summary_that_is_not_its_declared_type_fails_the_cell_in_one_line(tmp_path, capsys):
    code, err, out = run(tmp_path, "ablations: [{name: corpus_untyped_summary}]\n", capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert ("ablation corpus_untyped_summary: its summary does not match its declared DependenceSummary "
            "(dependence: Input should be a valid number") in err, err


def test_debug_shows_the_plugins_traceback(tmp_path, capsys):
    code, err, _ = run(tmp_path, "ablations: [{name: corpus_flaky}]\n", capsys, "--debug")
    assert code == 2 and "Traceback" in err and "misbehaving.py" in err and "raise ValueError" in err
    assert err.strip().splitlines()[-1].startswith("error: ablation plugin 'corpus_flaky'")


def test_a_plugin_that_calls_sys_exit_mid_run_does_not_pass_for_success(tmp_path, capsys):
    code, err, out = run(tmp_path, "ablations: [{name: corpus_quitter}]\n", capsys)
    assert_one_line(code, err, f"ablation plugin 'corpus_quitter' ({PLUGIN}) called sys.exit(0) while bench ran it")
    assert f"the run folder {out} keeps its 0 finished cell(s)" in err


def test_a_dataloader_worker_error_mid_run_is_one_line_with_the_original_exception(tmp_path, capsys):
    config = tmp_path / "study.yaml"  # `more` trains, then every test image fails to decode in a worker
    config.write_text(STUDY.replace("tasks:\n", "tasks:\n  more: {name: corpus_damaged_test_images}\n")
                      + "matrix: [[seg, net], [more, net]]\n")
    out = tmp_path / "run"
    before = hashes(tmp_path, CORPUS)
    with fresh_registries():
        code = main(["--plugin", str(PLUGIN), "run", str(config), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert_one_line(code, err, "OSError: image file is truncated (item 0) (raised in a DataLoader worker while "
                               "reading the data; --debug shows the traceback)")
    assert "Original Traceback" not in err and len(err) < 400
    assert f"the run folder {out} keeps its 2 finished cell(s)" in err
    assert {k: v for k, v in hashes(tmp_path, CORPUS).items() if not k.startswith(str(out))} == before


def test_worker_error_keeps_the_original_type_and_message():
    text = ('Caught BenchError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n'
            '  File "/x/worker.py", line 308, in _worker_loop\n    data = fetcher.fetch(index)\n'
            '           ^^^^^^^^^^^^^^^^^^^^\n  File "/x/files.py", line 9, in read\n    raise BenchError(msg)\n'
            'bench.errors.BenchError: /data/3.png: cannot decode; delete or replace the file\n')
    assert worker_error(text) == "/data/3.png: cannot decode; delete or replace the file"
    assert worker_error(text.replace("bench.errors.BenchError", "PIL.UnidentifiedImageError")) == (
        "UnidentifiedImageError: /data/3.png: cannot decode; delete or replace the file")
    assert worker_error("an ordinary message") is None


@pytest.mark.parametrize("command", ["leaderboard", "compare"])
def test_out_that_is_a_folder_is_refused_before_any_work(command, tmp_path, capsys):
    folder = tmp_path / "reports"
    (folder / "sub").mkdir(parents=True)
    (folder / "keep.md").write_text("mine\n")
    before = hashes(tmp_path)
    runs = ["no-such-run"] if command == "leaderboard" else ["no-such-a", "no-such-b"]
    code = main([command, *runs, "--out", str(folder)])
    assert_one_line(code, capsys.readouterr().err, f"--out {folder}: is a folder; give a file name, e.g. --out "
                                                   f"{folder}/{command}.md")
    code = main([command, *runs, "--out", str(folder / "keep.md" / "x.md")])
    assert_one_line(code, capsys.readouterr().err, f"{folder / 'keep.md'} is a file, not a folder")
    assert hashes(tmp_path) == before


def test_billion_laughs_is_refused_fast(capsys):
    t0 = time.perf_counter()
    code = main(["validate", str(CORPUS / "billion_laughs.yaml")])
    assert time.perf_counter() - t0 < 5
    assert_one_line(code, capsys.readouterr().err, "expands to over 100,000 values through its anchors")


def test_an_oversized_config_is_refused_unread(tmp_path, capsys):
    config = tmp_path / "big.yaml"
    config.write_text("# padding\n" * 110_000)
    code = main(["validate", str(config)])
    assert_one_line(code, capsys.readouterr().err, "big.yaml: is 1,100,000 bytes, over the 1,048,576 a study config")


def test_a_config_read_from_a_pipe_is_allowed_and_an_endless_one_is_cut_short():
    """`cat study.yaml | bench validate /dev/stdin`: reading from a pipe stays allowed (the writer refuses pipes,
    the reader need not); a pipe that never ends is read only up to the size limit, then refused in one line."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    study = (root / "configs" / "quickstart.yaml").read_bytes()
    done = subprocess.run([sys.executable, "-m", "bench", "validate", "/dev/stdin"], input=study,
                          capture_output=True, cwd=root, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(b"/dev/stdin: ok"), done.stderr
    endless = subprocess.Popen([sys.executable, "-m", "bench", "validate", "/dev/stdin"], stdin=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=root)
    try:
        for _ in range(2000):  # 2 MB of comments, more than the 1 MiB limit; bench stops reading before the end
            endless.stdin.write(b"# padding padding padding\n" * 40)
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            endless.stdin.close()
    err = endless.stderr.read().decode()
    assert endless.wait(timeout=120) == 2
    assert "/dev/stdin: is over the 1,048,576 bytes a study config may be" in err and err.count("\n") == 1
