"""Registry: entry points, duplicates, did-you-mean, --plugin files, broken plugins."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.registry import ABLATIONS, ARCHITECTURES, TASKS, Registry, load_plugin


def test_builtins_come_from_entry_points():
    assert {"cifar_resnet", "cifar_plain", "vgg", "unet"} <= set(ARCHITECTURES.names())
    assert "synthetic_shapes" in TASKS.names()
    assert {"block_lesion", "skip_removal"} <= set(ABLATIONS.names())
    entry = next(e for e in ARCHITECTURES.entries() if e.name == "unet")
    assert entry.source.startswith("entry point bench.models.unet:")
    assert "U-Net" in entry.description


def test_get_is_lazy_and_returns_the_factory():
    reg = Registry("architectures")
    obj = reg.get("cifar_resnet")
    from bench.models.resnet_cifar import cifar_resnet

    assert obj is cifar_resnet
    assert list(reg._entries) == ["cifar_resnet"]  # nothing else imported


def test_unknown_name_suggests_closest():
    with pytest.raises(BenchError, match=r"unknown architecture 'cifar_resnt'.*did you mean: cifar_resnet"):
        ARCHITECTURES.get("cifar_resnt")


def test_duplicate_names_are_an_error():
    reg = Registry("tasks")

    @reg.register("same")
    def first():
        """First."""

    def second():
        """Second."""

    with pytest.raises(BenchError, match="duplicate task name 'same'"):
        reg.register("same")(second)
    reg.register("same")(first)  # re-registering the same object is harmless


def test_plugin_file_registers_through_the_decorator(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(
        "from bench.registry import ARCHITECTURES\n"
        "@ARCHITECTURES.register('test_registry_tiny')\n"
        "def tiny(task, width: int = 4):\n"
        "    '''A tiny test architecture.'''\n"
        "    from bench.models.vgg import vgg\n"
        "    return vgg(task, layers=(1,), width=width)\n"
    )
    load_plugin(str(plugin))
    assert "test_registry_tiny" in ARCHITECTURES.names()
    entry = next(e for e in ARCHITECTURES.entries() if e.name == "test_registry_tiny")
    assert entry.description == "A tiny test architecture."


def test_broken_plugin_names_itself(tmp_path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise ImportError('needs foo')\n")
    with pytest.raises(BenchError, match=r"--plugin .*broken.py failed to import: ImportError: needs foo"):
        load_plugin(str(plugin))
    with pytest.raises(BenchError, match="no such file"):
        load_plugin(str(tmp_path / "absent.py"))
