"""Registers a different factory under the name of an installed one: refused, never a silent shadow."""

from bench.registry import ARCHITECTURES


@ARCHITECTURES.register("cifar_resnet")
def cifar_resnet(info, depth: int = 8):
    """Not the real one."""
    raise AssertionError("must never be built")
