"""Config schema: defaults, every error path of the schema, overrides, plugin params, hashing."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import config_hash, load_config
from bench.errors import BenchError

BASE = """
tasks:
  seg: {name: synthetic_shapes, target: pixel, n_train: 32, n_test: 16, image_size: 16}
architectures:
  net: {name: cifar_resnet, depth: 8, width: 4}
ablations:
  - {name: block_lesion}
"""


def write(tmp_path, text: str, name: str = "c.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_defaults_are_filled_and_documented(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    resolved = cfg.resolved()
    assert cfg.train.batch_size == 128 and cfg.seeds == [0]
    assert resolved["name"] == "c"
    assert resolved["architectures"]["net"] == {"name": "cifar_resnet", "depth": 8, "width": 4, "shortcut": "A",
                                                "preact": False}
    assert resolved["ablations"] == [{"name": "block_lesion", "bn_policy": "running", "bn_batches": 20, "blocks": "all"}]
    from bench.config import TrainConfig

    assert TrainConfig.model_fields["warmup_epochs"].description


def test_overrides_apply_before_validation(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.lr=0.01", "seeds=[1,2]", "architectures.net.depth=20"])
    resolved = cfg.resolved()
    assert cfg.train.lr == 0.01 and cfg.seeds == [1, 2] and resolved["architectures"]["net"]["depth"] == 20


def test_hash_changes_with_config(tmp_path):
    a = load_config(write(tmp_path, BASE)).resolved()
    b = load_config(write(tmp_path, BASE), ["train.lr=0.01"]).resolved()
    assert config_hash(a) != config_hash(b) and config_hash(a) == config_hash(load_config(write(tmp_path, BASE)).resolved())


@pytest.mark.parametrize(
    "mutation, overrides, message",
    [
        ("", ["trian.lr=1"], r"c.yaml: trian: unknown key \(did you mean: train"),
        ("", ["train.lrr=1"], r"train.lrr: unknown key \(did you mean: lr\?\)"),
        ("", ["train.lr=-1"], r"train.lr: Input should be greater than 0"),
        ("", ["train.batch_size=big"], r"train.batch_size: Input should be a valid integer"),
        ("", ["seeds=[]"], r"seeds: List should have at least 1 item"),
        ("", ["device=tpu"], r"device: must be auto, cpu, cuda or cuda:N"),
        ("", ["tasks.seg.name=synthetic_shape"], r"tasks.seg.name: unknown task 'synthetic_shape'.*did you mean"),
        ("", ["architectures.net.name=resnet"], r"architectures.net.name: unknown architecture 'resnet'"),
        ("", ["architectures.net.deep=3"], r"architectures.net.deep: unknown key \(did you mean: depth\?\)"),
        ("", ["architectures.net.depth=eight"], r"architectures.net.depth: Input should be a valid integer"),
        ("", ["ablations.0.name=block_lesoin"], r"ablations.0.name: unknown ablation 'block_lesoin'.*block_lesion"),
        ("", ["ablations.0.bn_policy=fresh"], r"ablations.0.bn_policy: Input should be 'running' or 'reestimate'"),
        ("", ["matrix=[[seg, nett]]"], r"matrix.0: unknown architecture alias 'nett' \(did you mean: net\?\)"),
        ("verdict: {dense: seg, global: cls}\n", [], r"verdict.global: unknown task alias 'cls'"),
        ("verdict: {dense: seg, global: seg, ablation: reorder}\n", [], r"verdict.ablation: 'reorder' is not in ablations"),
        ("", ["train.lr"], r"--set 'train.lr': expected key.path=value"),
    ],
)
def test_schema_errors_name_the_key_and_fix(tmp_path, mutation, overrides, message):
    path = write(tmp_path, BASE + mutation)
    with pytest.raises(BenchError, match=message) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)


def test_yaml_and_file_errors(tmp_path):
    with pytest.raises(BenchError, match=r"no such config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(BenchError, match=r"c.yaml: line 3 is not valid YAML"):
        load_config(write(tmp_path, "tasks:\n  a: [1, 2\n"))
    with pytest.raises(BenchError, match=r"top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(BenchError, match=r"tasks: required key is missing"):
        load_config(write(tmp_path, "architectures: {net: {name: vgg}}\n"))


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_published_config_validates(path, monkeypatch, capsys):
    """Each study in configs/ loads, resolves its plugins and checks its ablations against the identity
    flow (`bench validate`), from the repository root as the README says to run them."""
    root = path.parents[1]
    shared = (root / "../shared/data").resolve()
    if "../shared/data" in path.read_text() and not shared.is_dir():
        pytest.skip(f"{path.name} reads ../shared/data, which is absent here")
    monkeypatch.chdir(root)
    assert main(["validate", str(path.relative_to(root))]) == 0, capsys.readouterr().err
    assert f"{path.relative_to(root)}: ok" in capsys.readouterr().out
