"""Architecture plugins whose outputs do not fit the task: found by the one-batch probe before a run."""

from torch import nn

from bench.registry import ARCHITECTURES


class GlobalOnly(nn.Module):
    """Always (N, C) logits, even for a segmentation task."""

    def __init__(self, info):
        super().__init__()
        self.head = nn.Linear(3, info.num_classes)

    def forward(self, x):
        return self.head(x.mean((2, 3)))


@ARCHITECTURES.register("corpus_global_only")
def corpus_global_only(info):
    """Classification logits only."""
    return GlobalOnly(info)
