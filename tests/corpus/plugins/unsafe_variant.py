"""A train-time ablation whose variant name is a path: variant names end up in file names."""

from typing import ClassVar

from bench.ablations.base import Ablation, AblationParams
from bench.registry import ABLATIONS


@ABLATIONS.register("corpus_escape")
class Escape(Ablation):
    """Trains a variant called '../escape'."""

    phase: ClassVar = "train"
    removes: ClassVar = "identity"
    Params: ClassVar = AblationParams

    def variants(self, flow):
        return {"../escape": {}}
