"""The trainer: a bare PyTorch loop (the whole step fits on one screen), with resumable checkpoints.

SGD/AdamW, cosine / multistep / constant schedule with optional linear warm-up, cross-entropy with
the task's ignore index. A checkpoint (model, optimizer, scheduler, RNG, step) is written atomically
at every epoch end; training resumes from it. Data order depends only on (seed, epoch), so a resumed
run sees the same batches as an uninterrupted one. Under torchrun the model is wrapped in DDP;
``batch_size`` is per process, and each rank takes its slice of every global batch (bench.data.rank_batches).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bench.config import TrainConfig
from bench.data import Task
from bench.evaluate import autocast
from bench.io import atomic_write


class DivergedError(RuntimeError):
    """Loss became NaN/inf: the cell stops with a recorded error, the study goes on."""


def lr_lambda(cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(step >= m * total_steps for m in cfg.milestones)
        return 1.0

    return factor


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


def train(model: nn.Module, task: Task, cfg: TrainConfig, *, seed: int, device: torch.device,
          checkpoint: Path | None = None, on_step: Callable[[int, int, float], None] | None = None) -> dict:
    """Train ``model`` in place; return a log (steps, final loss, images/s, wall time)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    per_epoch = math.ceil(len(task.train) / cfg.batch_size) if world == 1 else len(task.train) // (cfg.batch_size * world)
    if cfg.max_steps_per_epoch:
        per_epoch = min(per_epoch, cfg.max_steps_per_epoch)
    total = max(1, round(cfg.epochs * per_epoch))
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    edited = any(getattr(m, "edit", None) is not None for m in model.modules())  # e.g. zeroed projections
    net = nn.parallel.DistributedDataParallel(model, find_unused_parameters=edited) if world > 1 else model
    if cfg.compile:
        net = torch.compile(net)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total, per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp == "fp16")
    ignore = task.info.ignore_index if task.info.ignore_index is not None else -100
    step, images, loss_value, t0 = 0, 0, float("nan"), time.perf_counter()
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, loss_value = int(state["step"]), float(state["loss"])
    net.train()
    while step < total:
        epoch = step // per_epoch
        for i, (x, y) in enumerate(task.train.batches(cfg.batch_size, train=True, epoch=epoch, seed=seed,
                                                      rank=rank, world=world)):
            if i < step % per_epoch:  # only when resuming mid-epoch
                continue
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, cfg.amp):
                loss = F.cross_entropy(net(x), y, ignore_index=ignore, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise DivergedError(f"loss is {loss.item()} at step {step} (lr {sched.get_last_lr()[0]:.3g})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step, images = step + 1, images + len(x)
            loss_value = loss.item()
            if on_step is not None:
                on_step(step, total, loss_value)
            if step % per_epoch == 0 or step >= total:
                break
        if checkpoint is not None and rank == 0:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": torch.get_rng_state(), "step": step, "loss": loss_value}
            atomic_write(checkpoint, lambda f, s=state: torch.save(s, f), mode="wb")
    wall = time.perf_counter() - t0
    return {"steps": total, "steps_per_epoch": per_epoch, "final_loss": round(loss_value, 6),
            "images_per_s": round(images * world / wall, 1) if images else None, "wall_s": round(wall, 3)}
