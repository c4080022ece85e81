"""identity_readout: how much of the answer the input itself already carries (the article's premise).

The best a LINEAR readout of the identity path alone can do: a per-pixel linear classifier (1x1 conv)
on the normalised input for segmentation, a linear classifier on the flattened input for
classification, trained with the same trainer for ``epochs`` on the task's training split.
Reported chance-normalised on the balanced-accuracy scale, like D: sufficiency = (m_readout − m_chance)
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
from pydantic import ConfigDict, Field
from torch import nn

from bench.ablations.base import (
    Ablation,
    AblationContext,
    AblationParams,
    AblationResult,
    DependenceRecord,
    Key,
    Summary,
)
from bench.data import TaskInfo
from bench.flow import IdentityFlow

_CACHE: dict[tuple, tuple[nn.Module, float]] = {}  # (id(task), seed, params) -> (readout, loss); dropped with the task


# A 1x1 conv has a handful of weights and sees every pixel: at 0.01 it had not left the uniform guess
# after 36 steps (loss 1.58 ~ ln 5 on the quickstart's shapes), scoring BELOW the majority predictor;
# at 0.1 it converges. The flattened readout has one weight per input value and diverges at 0.1.
DEFAULT_LR = {"segmentation": 0.1, "classification": 0.01}


class IdentityReadoutSummary(Summary):
    sufficiency: float = Field(description="(m_readout − m_chance)/(1 − m_chance), balanced accuracy.")
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


class IdentityReadoutRecord(DependenceRecord):
    model_config = ConfigDict(extra="forbid")
    key: IdentityReadoutKey


class IdentityReadout(Ablation):
    """Linear readout from the input alone (per pixel / flattened image): identity sufficiency per task."""

    phase: ClassVar = "test"
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
        from bench.config import TrainConfig
        from bench.train import train

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
        m, full, chance = outcome.score, ctx.baseline.score, ctx.baseline.chance_score
        boot = ctx.boot(outcome)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = ctx.baseline.bootstrap(ctx.weights, "balanced_chance")
            sufficiency_boot = (boot - level) / (1 - level)
            relative = (m - chance) / (full - chance) if full != chance else float("nan")
        record = ctx.record({"readout": "linear per pixel" if ctx.info.kind == "segmentation" else "linear"}, outcome)
        summary = IdentityReadoutSummary(
            sufficiency=float((m - chance) / (1 - chance)),
            sufficiency_relative_to_model=None if not np.isfinite(relative) else float(relative),
            readout_metric="miou" if ctx.info.kind == "segmentation" else "accuracy",
            readout_primary=round(outcome.primary, 6), readout_train_loss=train_loss)
        return AblationResult([record], summary, sufficiency_boot)

    @classmethod
    def section(cls, res, run_dir) -> str:
        from bench import plots
        from bench.report import fmt, fmt_ci, table

        cells = [c for c in res.cells if "identity_readout" in c.ablations]
        if not cells:
            return ""
        rows, labels, values, errors = [], [], [], []
        for task, seed in dict.fromkeys((c.task, c.seed) for c in cells):
            group = [c for c in cells if (c.task, c.seed) == (task, seed)]
            out = group[0].ablations["identity_readout"]
            relative = ", ".join(f"{c.architecture}: {fmt(c.ablations['identity_readout'].summary['sufficiency_relative_to_model'])}"
                                 for c in group)
            rows.append([task, group[0].task_kind, seed, f"{out.summary['readout_metric']} {fmt(out.summary['readout_primary'])}",
                         fmt(group[0].metrics.get("balanced_chance")), fmt_ci(out.summary_ci), relative])
            ci = out.summary_ci
            suff = out.summary["sufficiency"]
            labels.append(f"{task}\ns{seed}")
            values.append(suff)
            errors.append([suff - ci.low, ci.high - suff] if ci is not None and ci.low is not None else [0.0, 0.0])
        fig, (ax,) = plots.grid(1, width=max(4.2, 0.9 * len(labels)))
        ax.bar(range(len(values)), values, yerr=np.array(errors).T, color="tab:green", capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel("sufficiency (0 = chance, 1 = perfect)", fontsize=8)
        ax.set_title("linear readout of the input alone", fontsize=9)
        png = plots.save(fig, run_dir / "identity_readout.png")
        return ("## identity_readout — how much of the answer the input alone carries\n\n"
                "A linear readout of the input (per pixel for segmentation, of the flattened image for "
                "classification), trained on the training split. Headline: sufficiency = "
                "(m_readout − m_chance)/(1 − m_chance), 95% bootstrap CI over test examples; beside it, relative "
                "to each trained model: (m_readout − m_chance)/(m_full − m_chance).\n\n"
                f"![identity readout]({png})\n\n"
                + table(["task", "kind", "seed", "readout task metric", "chance (balanced acc.)", "sufficiency [95% CI]",
                         "relative to the trained model"], rows) + "\n")
