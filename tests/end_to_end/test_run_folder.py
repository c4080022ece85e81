"""bench touches only what it wrote, and reads its run folder through one loader.

- A folder bench did not create (no ``.bench-run``) and not empty is refused, with or without
  ``--restart``; in bench's own folder, files the user added survive a resume and a ``--restart``
  byte for byte (bench's clean-up is scoped to its own names).
- Each kind of run-folder file, damaged in turn: a damaged cell (json or npz: garbage, truncated,
  wrong fields, another cell's) is recomputed with one warning line, and the results equal the
  undamaged run's; a damaged or hostile checkpoint is discarded (never unpickled) and its cell
  retrained from scratch, to the same numbers; a damaged ``config.resolved.yaml`` is exit 2 with one
  line naming it and the fix (tests/corpus/run_folders/cases.yaml, with the other refused folders); so is a
  link or a FIFO named like one of bench's files or folders (its lock, a figure, ``cells/``): the file or
  folder it points to is left byte-identical, the link itself in place.
- SIGTERM ends a run like Ctrl-C: one line, exit 143, the lock released, finished cells kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.rundir import RunDir
from tests.helpers import one_torch_thread, without

ROOT = Path(__file__).resolve().parents[2]
CORPUS = yaml.safe_load((Path(__file__).parents[1] / "corpus" / "run_folders" / "cases.yaml").read_text())
STUDY = """
name: folder
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 16, n_test: 8, image_size: 16, num_classes: 3}
architectures:
  net: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 1, batch_size: 8}
ablations:
  - {name: skip_removal}
  - {name: block_lesion}
bootstrap: 100
"""
BASE, VARIANT = "seg__net__baseline__s0", "seg__net__no_identity__s0"
VOLATILE = {"wall_s", "images_per_s", "timings", "resumed_from_step", "provenance", "computed_with", "invocations"}


def stable(obj):
    return without(obj, VOLATILE)


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (folders appear as entries too)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def run(config: Path, out: Path, *extra: str) -> int:
    with one_torch_thread():
        return main(["run", str(config), "--out", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("folder") / "study.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def finished(config) -> Path:
    out = config.parent / "finished"
    assert run(config, out) == 0
    return out


def results(out: Path) -> dict:
    return stable(json.loads((out / "results.json").read_text()))


# -- class 1 -------------------------------------------------------------------------------------
USER_FILES = {"notes.txt": b"my notes", "sub/draft.tmp": b"draft", "sub/.keep.abcdef.tmp": b"hidden",
              "checkpoints/x.pt": b"my weights", "cells/y.csv": b"a,b\n1,2\n", "cells/.y.csv.abc123.tmp": b"t",
              "cells/notes.json": b"{}", "checkpoints/seg.pt": b"not a cell id"}


def test_user_files_in_a_bench_folder_survive_a_resume_and_a_restart(config, finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for rel, data in USER_FILES.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    mine = {k: v for k, v in tree(out).items() if k in USER_FILES}
    assert run(config, out) == 0
    assert {k: v for k, v in tree(out).items() if k in USER_FILES} == mine
    (out / "cells" / f".{BASE}.json.q1w2e3.tmp").write_text("{")  # a write of bench's, cut short
    assert run(config, out, "--restart") == 0
    assert {k: v for k, v in tree(out).items() if k in USER_FILES} == mine
    assert not (out / "cells" / f".{BASE}.json.q1w2e3.tmp").exists()
    assert results(out) == results(finished)


def test_a_user_folder_is_refused_and_left_byte_identical(config, tmp_path, capsys):
    out = tmp_path / "mine"
    for rel, data in {**USER_FILES, "results.json": b'{"mine": true}', "report.md": b"# mine"}.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    before = tree(out)
    for extra in ([], ["--restart"]):
        assert run(config, out, *extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not empty and was not created by bench" in err, err
        assert tree(out) == before


def test_an_empty_folder_is_claimed(config, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert run(config, out) == 0
    assert (out / ".bench-run").is_file()


# -- class 2: each kind of run-folder file, damaged in turn --------------------------------------
def _hostile(path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'PWNED'}",))

    path.write_bytes(pickle.dumps({"model": Boom()}))


DAMAGE = {
    "cell-json-garbage": (f"cells/{BASE}.json", lambda p: p.write_bytes(b"\x00\xff garbage")),
    "cell-json-truncated": (f"cells/{BASE}.json", lambda p: p.write_bytes(p.read_bytes()[:40])),
    "cell-json-wrong-fields": (f"cells/{BASE}.json", lambda p: p.write_text('{"id": 3, "metrics": "high"}')),
    "cell-json-another-cell": (f"cells/{BASE}.json", lambda p: p.write_bytes(p.with_name(f"{VARIANT}.json").read_bytes())),
    "cell-json-a-list": (f"cells/{VARIANT}.json", lambda p: p.write_text("[1, 2]")),
    "cell-npz-garbage": (f"cells/{BASE}.npz", lambda p: p.write_bytes(b"PK\x03\x04 not a zip")),
    "cell-npz-truncated": (f"cells/{BASE}.npz", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])),
    "cell-npz-empty": (f"cells/{VARIANT}.npz", lambda p: p.write_bytes(b"")),
    "cell-npz-pickled-object": (f"cells/{BASE}.npz", lambda p: _hostile(p)),
    "dependence-boot-garbage": (f"cells/{VARIANT}.dependence_boot.npy", lambda p: p.write_bytes(b"\x93NUMPY junk")),
    "results-json-garbage": ("results.json", lambda p: p.write_bytes(b"\xff\xfe")),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_file_is_recomputed_to_the_same_results(kind, config, finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    rel, damage = DAMAGE[kind]
    damage(out / rel)
    capsys.readouterr()
    assert run(config, out) == 0
    err = capsys.readouterr().err
    if rel.startswith("cells/") and not rel.endswith(".npy"):
        line = next(x for x in err.splitlines() if x.startswith("warning:"))
        assert rel in line and "is damaged" in line and "recomputing that cell" in line, err
    assert "Traceback" not in err
    assert results(out) == results(finished)
    assert not (out / "cells" / "PWNED").exists()


def _older(cell: dict, ablation: str) -> None:
    cell["ablation_versions"][ablation] -= 1


def _unrecorded(cell: dict) -> None:
    del cell["ablation_versions"]


def _was_not_applicable(cell: dict) -> None:
    del cell["ablations"]["block_lesion"]
    cell["not_applicable"]["block_lesion"] = "an older rule said so"


STALE = {  # cell -> (what an older bench left there, what the warning says)
    "test-ablation-older-version": (BASE, lambda c: _older(c, "block_lesion"), "computed with ablation versions"),
    "train-ablation-older-version": (VARIANT, lambda c: _older(c, "skip_removal"), "computed with ablation versions"),
    "versions-unrecorded": (BASE, _unrecorded, "computed with ablation versions (unrecorded)"),
    "applicability-changed": (BASE, _was_not_applicable, "block_lesion is applicable now, unlike when"),
}


@pytest.mark.parametrize("kind", sorted(STALE))
def test_a_cell_an_older_bench_computed_is_retrained_from_scratch(kind, config, finished, tmp_path, capsys):
    """A finished cell shaped by another version of an ablation (an older bench's, on another scale), or
    by another applicability rule, is not mixed into the results: one warning line names the file, and
    the cell is retrained from scratch (its old checkpoint is not resumed) to the current results."""
    cid, damage, says = STALE[kind]
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    path = out / "cells" / f"{cid}.json"
    cell = json.loads(path.read_text())
    damage(cell)
    path.write_text(json.dumps(cell))
    capsys.readouterr()
    assert run(config, out) == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:"))
    assert f"cells/{cid}.json" in line and says in line and "recomputing that cell" in line, line
    redone = json.loads(path.read_text())
    assert redone["train"]["resumed_from_step"] == 0
    assert results(out) == results(finished)


CHECKPOINT = {
    "checkpoint-truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "checkpoint-garbage": lambda p: p.write_bytes(os.urandom(256)),
    "checkpoint-hostile-pickle": _hostile,
    "checkpoint-wrong-fields": lambda p: __import__("torch").save({"step": "x"}, p),
}


@pytest.mark.parametrize("kind", sorted(CHECKPOINT))
def test_a_damaged_checkpoint_is_discarded_and_the_cell_retrained(kind, config, finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    ckpt = out / "checkpoints" / f"{BASE}.pt"
    CHECKPOINT[kind](ckpt)
    (out / "cells" / f"{BASE}.json").unlink()  # the cell must be recomputed: its checkpoint is read
    capsys.readouterr()
    assert run(config, out) == 0
    err = capsys.readouterr().err
    assert f"checkpoints/{BASE}.pt: is damaged" in err and "retraining that cell from scratch" in err, err
    assert not (out / "checkpoints" / "PWNED").exists()  # never unpickled
    assert results(out) == results(finished)
    cell = json.loads((out / "cells" / f"{BASE}.json").read_text())
    assert cell["train"]["resumed_from_step"] == 0


# -- the corpus of refused folders ----------------------------------------------------------------
def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from bench.rundir import RunDir; r = RunDir(sys.argv[1]); r.lock(); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_a_refused_folder_is_one_line_and_untouched(case, config, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for d in case.get("dirs", []):
        (out / d).mkdir(parents=True)
    for rel, content in case.get("files", {}).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        data = bytes.fromhex(content["hex"]) if isinstance(content, dict) else content.encode()
        (out / rel).write_bytes(data)
    if case.get("marker"):
        (out / ".bench-run").write_text("{}")
    outside = _outside(tmp_path)
    for rel, target in case.get("links", {}).items():
        (out / rel).symlink_to(outside / target)
    for rel in case.get("fifos", []):
        os.mkfifo(out / rel)
    holder = _hold_lock(out) if case.get("lock") else None
    before, theirs = tree(out), tree(outside)
    try:
        code = run(config, out, *case.get("cli", []))
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and case["expect"] in err, err
    after = tree(out)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of what was there changed
    assert {k for k in after if k not in before and after[k] != "dir"} <= {".bench.lock", "config.resolved.yaml"}
    assert tree(outside) == theirs  # what a link points to is never written
    assert all((out / rel).is_symlink() for rel in case.get("links", {}))  # nor the link replaced
    assert not (Path.cwd() / "pwned").exists()


def _outside(tmp_path: Path) -> Path:
    """The user's files outside the run folder, which a link inside it points to."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "notes.txt").write_text("the user's notes")
    (outside / "photo.png").write_bytes(b"\x89PNG the user's")
    (outside / "folder" / "seg__net__baseline__s0.json").write_text('{"the user\'s": 1}')  # named like a cell
    return outside


def test_the_corpus_has_a_case_per_class():
    ids = [c["id"] for c in CORPUS]
    assert len(set(ids)) == len(ids)
    assert any(i.startswith("foreign") for i in ids) and any(i.startswith("resolved-config") for i in ids)
    assert any(i.startswith("locked") for i in ids) and any(i.startswith("link") for i in ids)


# -- SIGTERM -------------------------------------------------------------------------------------
def test_sigterm_ends_a_run_like_ctrl_c(tmp_path):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(STUDY.replace("n_train: 16", "n_train: 512").replace("epochs: 1", "epochs: 20"))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(cfg), "--out", str(out), "--quiet"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (out / "checkpoints").is_dir() or not list((out / "checkpoints").glob("*.pt")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err == "terminated (SIGTERM): finished cells are kept; run the same command again to resume\n"
    with RunDir(out).locked():  # released: the same command can resume
        pass
