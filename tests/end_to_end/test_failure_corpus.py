"""Bad input, clear answer; failures contained.

Every case of tests/corpus/cases.yaml, through ``validate`` and ``run``, exits 2 with ONE line on
stderr that names the file/key and the fix, prints no traceback, and leaves the run folder as it was:
an absent one is not created, an existing one is not touched. A cell whose training diverges is
recorded as failed while the study finishes the others (exit 0, one warning line on stderr).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.registry import ARCHITECTURES, REGISTRIES

CORPUS = Path(__file__).parents[1] / "corpus"
REPORT = Path(__file__).parents[2] / "reports" / "quickstart"  # a committed run folder (only read here)
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
BASE = """
name: corpus
seeds: [0]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 16, n_test: 8, image_size: 16}
architectures:
  net: {name: cifar_resnet, depth: 8, width: 4}
train: {epochs: 0.5, batch_size: 8}
ablations:
  - {name: block_lesion}
"""


@contextlib.contextmanager
def fresh_registries():
    """Plugins loaded by one call register names; the next call (and the next test) starts clean."""
    saved = {kind: (dict(r._entries), dict(r.failed)) for kind, r in REGISTRIES.items()}
    try:
        yield
    finally:
        for kind, r in REGISTRIES.items():
            r._entries, r.failed = saved[kind]


def test_the_corpus_is_large_and_every_file_is_used():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    text = (CORPUS / "cases.yaml").read_text() + Path(__file__).read_text()
    for f in [*CORPUS.glob("*.yaml"), *CORPUS.glob("plugins/*.py")]:
        if f.name != "cases.yaml":
            assert f.name in text, f"{f} is not used by any case"
    for c in CASES:
        if "file" in c:
            assert (CORPUS / c["file"]).exists(), c["id"]


def materialise(case: dict, tmp_path: Path) -> tuple[list[str], list[str], Path]:
    """(global args, command args, config path) for one case."""
    (tmp_path / "a_file").write_text("x")
    os.mkfifo(tmp_path / "a_fifo")
    if "file" in case:
        config = CORPUS / case["file"]
    elif "raw" in case:
        config = tmp_path / "absent.yaml"
    else:
        config = tmp_path / "study.yaml"
        config.write_text(BASE)

    def fill(s: str) -> str:
        return (s.replace("CORPUS", str(CORPUS)).replace("OUT_FILE", str(tmp_path / "a_file"))
                .replace("OUT_FIFO", str(tmp_path / "a_fifo"))
                .replace("CELLS", ", ".join(map(str, range(834)))))

    cli = [fill(a) for a in case.get("cli", [])]
    glob = [a for i, a in enumerate(cli) if a == "--plugin" or cli[i - 1:i] == ["--plugin"]]
    rest = [a for a in cli if a not in glob] + [a for s in case.get("set", []) for a in ("--set", fill(s))]
    return glob, rest, config


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (Python's own __pycache__ aside): what the user owns."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def call(argv: list[str], capsys) -> tuple[int, str]:
    with fresh_registries():
        code = main(argv)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, expect: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expect in err, err
    assert "Traceback" not in err


# cases marked `only: run` (data, device, forward pass, output folder) are found when a run starts
RUNS = [(c, cmd) for c in CASES if "argv" not in c for cmd in ("validate", "run") if c.get("only", cmd) == cmd]
COMMANDS = [c for c in CASES if "argv" in c]  # other commands (leaderboard, compare, reports): the argv as given


@pytest.mark.parametrize("case", COMMANDS, ids=[c["id"] for c in COMMANDS])
def test_other_commands_exit_2_with_one_line(case, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    os.mkfifo(tmp_path / "a_fifo")
    (tmp_path / "folder" / "sub").mkdir(parents=True)
    (tmp_path / "folder" / "notes.md").write_text("the user's\n")
    argv = [a.replace("CORPUS", str(CORPUS)).replace("OUT_FILE", str(tmp_path / "a_file"))
            .replace("OUT_FIFO", str(tmp_path / "a_fifo")).replace("REPORT", str(REPORT))
            .replace("TMP", str(tmp_path)) for a in case["argv"]]
    fifo = os.lstat(tmp_path / "a_fifo")
    inputs = hashes(tmp_path, CORPUS)
    code, err = call(argv, capsys)
    assert_one_line(code, err, case["expect"].replace("CORPUS", str(CORPUS)).replace("TMP", str(tmp_path)))
    assert hashes(tmp_path, CORPUS) == inputs, "a file bench did not create was changed"
    assert os.lstat(tmp_path / "a_fifo")[:7] == fifo[:7], "the FIFO was replaced"


@pytest.mark.parametrize("case, command", RUNS, ids=[f"{c['id']}-{cmd}" for c, cmd in RUNS])
def test_bad_input_exits_2_with_one_line(case, command, tmp_path, capsys):
    glob, rest, config = materialise(case, tmp_path)
    argv = [*glob, command, str(config), *rest]
    own_out = "--out" in rest
    out = tmp_path / "run"
    if command == "run" and not own_out:
        argv += ["--out", str(out), "--quiet"]
    inputs = hashes(tmp_path, CORPUS)
    code, err = call(argv, capsys)
    assert_one_line(code, err, case["expect"].replace("CORPUS", str(CORPUS)))
    assert not out.exists(), "a failed start must not create the run folder"
    assert hashes(tmp_path, CORPUS) == inputs, "a file bench did not create was changed"
    if command == "run" and not own_out:  # an existing run folder is left exactly as it was
        (out / "cells").mkdir(parents=True)
        (out / "config.resolved.yaml").write_text("name: earlier\n")
        (out / "cells" / "seg__net__baseline__s0.json").write_text("{}")
        before = snapshot(out)
        again, err2 = call(argv, capsys)
        assert (again, err2) == (code, err)
        assert snapshot(out) == before


def test_broken_and_unsafe_entry_points_are_listed_while_the_rest_work(monkeypatch, capsys):
    ARCHITECTURES.load_all()
    eps = dict(ARCHITECTURES._entry_points())
    eps["broken_net"] = [EntryPoint("broken_net", "bench_no_such_module:net", "bench.architectures")]
    eps["../evil"] = [EntryPoint("../evil", "bench.models.resnet_cifar:cifar_resnet", "bench.architectures")]
    monkeypatch.setattr(ARCHITECTURES, "_eps", eps)
    monkeypatch.setattr(ARCHITECTURES, "failed", {})
    assert main(["list", "architectures"]) == 0
    out = capsys.readouterr().out
    assert "broken_net             FAILED TO IMPORT: ModuleNotFoundError" in out and "cifar_resnet" in out
    assert "../evil                FAILED TO IMPORT: unsafe name" in out
    assert main(["validate", "configs/quickstart.yaml"]) == 0


CONTAINED = """
name: contained
seeds: [0]
plugins: [PLUGIN]
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 32, n_test: 16, image_size: 16, num_classes: 3}
  cls: {name: synthetic_shapes, target: image, n_train: 32, n_test: 16, image_size: 16, num_classes: 3}
architectures:
  good: {name: cifar_resnet, depth: 8, width: 4}
  bad: {name: corpus_nan_resnet}
train: {epochs: 1, batch_size: 16, lr: 0.05}
ablations:
  - {name: block_lesion}
  - {name: skip_removal}
verdict: {dense: seg, global: cls, ablation: skip_removal, architecture: bad}
bootstrap: 100
"""


def test_a_diverging_cell_is_recorded_and_the_study_carries_on(tmp_path, capsys):
    config = tmp_path / "contained.yaml"
    config.write_text(CONTAINED.replace("PLUGIN", str(CORPUS / "plugins" / "nan_arch.py")))
    out = tmp_path / "run"
    with fresh_registries():
        assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0  # a sweep keeps the others
    err = capsys.readouterr().err
    assert err == "warning: 4 cell(s) failed (see report.md, 'Trained models'); the others finished\n"
    res = json.loads((out / "results.json").read_text())
    cells = {c["id"]: c for c in res["cells"]}
    assert len(cells) == 8
    for cid, c in cells.items():
        if c["architecture"] == "bad":
            assert c["status"] == "failed" and c["error"].startswith("diverged: loss is nan at step 0"), cid
            assert c.get("metrics") in (None, {}), cid
        else:
            assert c["status"] == "ok" and c["metrics"], cid
    assert cells["seg__good__baseline__s0"]["ablations"]["block_lesion"]["records"]
    assert {(x["architecture"], x["variant"]) for x in res["comparisons"]} == {("good", "no_identity")}
    report = (out / "report.md").read_text()
    assert report.count("FAILED: diverged: loss is nan at step 0") == 4
    assert "**no verdict** — no result for skip_removal on bad" in report
    # a failed cell is a result: the same command does not retrain it (--restart does)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    with fresh_registries():
        assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")} == stamps
