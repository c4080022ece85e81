"""identity_readout: how much of the answer the input itself already carries (the article's premise).

The best a LINEAR readout of the identity path alone can do: a per-pixel linear classifier (1x1 conv)
on the normalised input for segmentation, a linear classifier on the flattened input for
classification, trained with the same trainer for ``epochs`` on the task's training split.
Reported chance-normalised on the study's measure, like D: sufficiency = (m_readout − m_chance)
/ (1 − m_chance) (the headline, a property of the task), and relative to the trained model,
(m_readout − m_chance) / (m_full − m_chance).
The first is the headline (verdict, CI): it does not depend on how well the architecture trained.
It depends only on the task and seed, so it is computed once per process and copied into each cell.
"""

from __future__ import annotations

import weakref
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from bench.ablations.base import (
    AblationContext,
    AblationParams,
    AblationResult,
    Key,
    Summary,
    TestTimeAblation,
    record_of,
)
from bench.config import TrainConfig
from bench.data import TaskInfo
from bench.flow import IdentityFlow
from bench.train import train

_CACHE: dict[tuple, tuple[nn.Module, float]] = {}  # (id(task), seed, params) -> (readout, loss); dropped with the task


# A 1x1 conv has a handful of weights and sees every pixel: at 0.01 it had not left the uniform guess
# after 36 steps (loss 1.58 ~ ln 5 on the quickstart's shapes), scoring BELOW the majority predictor;
# at 0.1 it converges. The flattened readout has one weight per input value and diverges at 0.1.
DEFAULT_LR = {"segmentation": 0.1, "classification": 0.01}


class IdentityReadoutSummary(Summary):
    sufficiency: float = Field(description="(m_readout − m_chance)/(1 − m_chance) on the study's measure.")
    sufficiency_relative_to_model: float | None = Field(description="(m_readout − m_chance)/(m_full − m_chance).")
    readout_metric: str = Field(description="The task metric reported beside it (accuracy or miou).")
    readout_primary: float = Field(description="The readout's task metric.")
    readout_train_loss: float = Field(description="Final training loss: a readout that did not converge shows here.")


class IdentityReadoutParams(AblationParams):
    epochs: float = Field(5, gt=0, le=10_000)
    lr: float | None = Field(None, gt=0, le=100, description="None: 0.1 per pixel, 0.01 on the flattened input")
    batch_size: int = Field(128, ge=1, le=65_536)
    optimizer: Literal["adamw", "sgd"] = "adamw"


def linear_readout(info: TaskInfo, input_shape: torch.Size) -> nn.Module:
    """1x1 conv (per pixel) for segmentation; linear on the flattened (C, H, W) input for classification.

    The flattened readout first average-pools to the TRAINING size (H, W): the identity where test images
    have that size, and still a linear map of the input where they do not (a twin that trains on crops of
    its source and is evaluated on whole, padded images)."""
    if info.kind == "segmentation":
        return nn.Conv2d(info.in_channels, info.num_classes, 1)
    c, h, w = input_shape
    return nn.Sequential(nn.AdaptiveAvgPool2d((h, w)), nn.Flatten(), nn.Linear(c * h * w, info.num_classes))


class IdentityReadoutKey(Key):
    readout: str = Field(description="The readout trained on the input alone.")


IdentityReadoutRecord = record_of(IdentityReadoutKey)  # what ctx.record writes, with this key


class IdentityReadout(TestTimeAblation):
    """Linear readout from the input alone (per pixel / flattened image): identity sufficiency per task."""

    version: ClassVar = 2  # 0.2.0: D on balanced accuracy (and this ablation's fixes in docs/protocols.md)
    removes: ClassVar = "none"
    measure: ClassVar = "sufficiency"
    reads: ClassVar = "input"
    Params: ClassVar = IdentityReadoutParams
    Summary: ClassVar = IdentityReadoutSummary
    Record: ClassVar = IdentityReadoutRecord

    def applicable(self, flow: IdentityFlow) -> str | None:
        return None

    def readout(self, ctx: AblationContext) -> tuple[nn.Module, float]:
        """The trained readout and its final training loss (so an unconverged readout is visible)."""
        key = (id(ctx.task), ctx.seed, tuple(sorted(self.params.model_dump().items())))
        if key not in _CACHE:
            torch.manual_seed(ctx.seed)
            x, _ = next(iter(ctx.task.train.batches(1, train=True)))  # the training geometry (a crop, if any)
            model = linear_readout(ctx.info, x.shape[1:])
            p = self.params
            cfg = TrainConfig(epochs=p.epochs, lr=p.lr or DEFAULT_LR[ctx.info.kind], batch_size=p.batch_size,
                              optimizer=p.optimizer, weight_decay=0.0, warmup_epochs=0)
            stats = train(model, ctx.task, cfg, seed=ctx.seed, device=ctx.device)
            _CACHE[key] = model, stats["final_loss"]
            weakref.finalize(ctx.task, _CACHE.pop, key, None)  # a later task cannot reuse this id's entry
        return _CACHE[key]

    def run(self, ctx: AblationContext) -> AblationResult:
        readout, train_loss = self.readout(ctx)
        outcome = ctx.evaluate(model=readout)
        m, full, chance = ctx.score(outcome), ctx.score(ctx.baseline), ctx.chance_score
        boot = ctx.boot(outcome)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = ctx.chance_boot()
            sufficiency_boot = (boot - level) / (1 - level)
            relative = (m - chance) / (full - chance) if full != chance else float("nan")
        record = ctx.record({"readout": "linear per pixel" if ctx.info.kind == "segmentation" else "linear"}, outcome)
        summary = IdentityReadoutSummary(
            sufficiency=float((m - chance) / (1 - chance)),
            sufficiency_relative_to_model=None if not np.isfinite(relative) else float(relative),
            readout_metric="miou" if ctx.info.kind == "segmentation" else "accuracy",
            readout_primary=round(outcome.primary, 6), readout_train_loss=train_loss)
        return AblationResult([record], summary, sufficiency_boot)
