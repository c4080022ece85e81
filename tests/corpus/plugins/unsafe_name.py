"""Registers an architecture under a name that is a path: names end up in file names."""

from bench.models.resnet_cifar import cifar_resnet
from bench.registry import ARCHITECTURES

ARCHITECTURES.register("../../escape")(cifar_resnet)
