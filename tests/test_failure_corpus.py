"""Bad input, clear answer: every case of tests/corpus/cases.yaml exits 2 with ONE line naming the
file/key and the fix, prints no traceback, and leaves no run folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.config import config_hash, load_config
from bench.errors import BenchError

CASES = yaml.safe_load((Path(__file__).parent / "corpus" / "cases.yaml").read_text())
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


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40 and len({c["id"] for c in CASES}) == len(CASES)


def materialise(case: dict, tmp_path: Path) -> tuple[list[str], Path]:
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('plugin is broken')\n")
    (tmp_path / "a_file").write_text("x")
    config = tmp_path / "study.yaml"
    if "raw" in case and case["raw"] is None:
        config = tmp_path / "absent.yaml"
    else:
        config.write_text(case.get("raw", BASE))
    sub = {"PLUGIN_BROKEN": str(broken), "OUT_FILE": str(tmp_path / "a_file")}

    def fill(s: str) -> str:
        for k, v in sub.items():
            s = s.replace(k, v)
        return s

    extra = [a for s in case.get("set", []) for a in ("--set", fill(s))]
    cli = [fill(a) for a in case.get("cli", [])]
    return cli + extra, config


# cases marked `only: run` (missing data, CUDA, output folder) are found when a run starts, not by validate
RUNS = [(c, cmd) for c in CASES for cmd in ("validate", "run") if c.get("only", cmd) == cmd]


@pytest.mark.parametrize("case, command", RUNS, ids=[f"{c['id']}-{cmd}" for c, cmd in RUNS])
def test_bad_input_exits_2_with_one_line(case, command, tmp_path, capsys):
    args, config = materialise(case, tmp_path)
    plugin_args = [a for i, a in enumerate(args) if args[i - 1:i] == ["--plugin"] or a == "--plugin"]
    rest = [a for a in args if a not in plugin_args]
    out = tmp_path / "run"
    argv = [*plugin_args, command, str(config), *rest]
    if command == "run" and "--out" not in rest:
        argv += ["--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert case["expect"] in err, err
    assert "Traceback" not in err
    assert not out.exists(), "a failed start must not create the run folder"


def test_broken_entry_point_is_listed_while_the_rest_work(monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    from bench.registry import ARCHITECTURES

    ARCHITECTURES.load_all()
    eps = dict(ARCHITECTURES._entry_points())
    eps["broken_net"] = [EntryPoint("broken_net", "bench_no_such_module:net", "bench.architectures")]
    monkeypatch.setattr(ARCHITECTURES, "_eps", eps)
    monkeypatch.setattr(ARCHITECTURES, "failed", {})
    assert main(["list", "architectures"]) == 0
    out = capsys.readouterr().out
    assert "broken_net             FAILED TO IMPORT: ModuleNotFoundError" in out and "cifar_resnet" in out
    assert main(["validate", "configs/quickstart.yaml"]) == 0


junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                    max_leaves=10)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(st.sampled_from(["tasks", "architectures", "train", "seeds", "ablations", "matrix",
                                            "verdict", "device", "junk"]), junk, max_size=5))
def test_junk_configs_only_ever_raise_bench_errors(doc, tmp_path):
    path = tmp_path / "junk.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config(path)
    except BenchError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lr=st.floats(1e-5, 1.0), depth=st.sampled_from([8, 14, 20]), seeds=st.lists(st.integers(0, 99), min_size=1,
                                                                                     max_size=3))
def test_valid_configs_resolve_stably(lr, depth, seeds, tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    over = [f"train.lr={lr!r}", f"architectures.net.depth={depth}", f"seeds={seeds}"]
    cfg, a = load_config(path, over)
    _, b = load_config(path, over)
    assert a == b and config_hash(a) == config_hash(b)
    assert cfg.train.lr == pytest.approx(lr) and a["architectures"]["net"]["depth"] == depth
    path.write_text(yaml.safe_dump(a))  # the resolved config is itself a valid config with the same meaning
    assert load_config(path)[1] == {**a, "name": a["name"]}
