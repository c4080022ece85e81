"""An architecture whose loss is NaN from the first step: its cells fail, the study carries on."""

from bench.models.resnet_cifar import cifar_resnet
from bench.registry import ARCHITECTURES


@ARCHITECTURES.register("corpus_nan_resnet")
def corpus_nan_resnet(info, depth: int = 8, width: int = 4):
    """cifar_resnet with NaN outputs: training diverges at step 0."""
    model = cifar_resnet(info, depth=depth, width=width)
    model.register_forward_hook(lambda module, inputs, out: out * float("nan"))
    return model
