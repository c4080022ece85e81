"""The trainer: a bare PyTorch loop (the whole step fits on one screen), with resumable checkpoints.

SGD/AdamW, cosine / multistep / constant schedule with optional linear warm-up, cross-entropy with
the task's ignore index. A checkpoint (model, optimizer, scheduler, RNG, step) is written atomically
at every epoch end; training resumes from it. Data order depends only on (seed, epoch), so a resumed
run sees the same batches as an uninterrupted one (the host RNGs that augmentations in the main
process draw from are re-seeded from (seed, epoch) too). Under torchrun the model is wrapped in DDP;
``batch_size`` is per process, and each rank takes its slice of every global batch (bench.data.rank_batches).
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from bench.config import TrainConfig
from bench.data import Task
from bench.errors import BenchError
from bench.io import atomic_write
from bench.models.joint import set_read
from bench.phases import step as phase_step
from bench.precision import autocast, resolve_precision


class DivergedError(RuntimeError):
    """Loss became NaN/inf: the cell stops with a recorded error, the study goes on."""


@contextmanager
def deterministic(compile: bool = False) -> Iterator[None]:
    """Deterministic kernels while a study runs; the previous settings are restored afterwards.

    CPU: a study is bit-reproducible. The same config and seeds on the same machine with the same
    library versions give identical results.json metrics and records (tests/end_to_end/test_reproducible.py),
    and a study killed at any point and resumed gives the numbers of an uninterrupted run
    (tests/end_to_end/test_resume.py). Every random draw comes from a generator seeded by (seed, epoch) or from
    a torch RNG state stored in the epoch checkpoint.

    CUDA: the same switches are set (``torch.use_deterministic_algorithms(True, warn_only=True)``,
    cuDNN autotuning off, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` if the process has not set it), but bit
    equality is not promised. Some kernels have no deterministic version and only warn (atomicAdd in
    the backward of bilinear upsampling, of scatter/index_add, of adaptive pooling). cuDNN and cuBLAS
    may choose other algorithms on another GPU, driver or library version. bf16/fp16 autocast, TF32
    and torch.compile change rounding, and DDP reduces gradients in bucket order. Expect GPU reruns to
    agree closely but not exactly: the spread over seeds, not over reruns, is what the confidence
    intervals measure.
    """
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    bench = torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS first starts
    _set_deterministic(True, True, compile)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        _set_deterministic(*was, compile)
        torch.backends.cudnn.benchmark = bench


def _set_deterministic(mode: bool, warn_only: bool, compile: bool) -> None:
    if compile or "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:  # the public call imports torch._inductor (seconds) only to set its flag; nothing is compiled here
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def seed_host_rngs(seed: int, epoch: int) -> None:
    """Python's and NumPy's global RNGs (albumentations in the main process) from (seed, epoch) alone."""
    s = (seed * 100_003 + epoch) % 2**32
    random.seed(s)
    np.random.seed(s)


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


def class_weights(task: Task, how: str, device: torch.device, cap: float | None = None) -> torch.Tensor | None:
    """Loss weights per class. ``balanced``: N / (C · n_c) over the C classes present in the training
    labels (per image for classification, per pixel for segmentation; ignore index excluded) — every class
    then weighs the same in the loss, as every class weighs the same in balanced accuracy (scikit-learn's ``class_weight="balanced"``). A class absent from the stored training labels
    (one that augmentation can still produce, e.g. a twin's label recomputed from a cropped mask) gets the
    largest weight: it is rarer than any class counted, and a weight of 0 would drop its examples from the
    loss (a batch of only such examples would have no loss at all). ``cap``: no weight above ``cap`` times
    the smallest (a class seen once would otherwise outweigh a whole batch)."""
    if how == "none":
        return None
    t = task.train.targets().flatten().long()
    if task.info.ignore_index is not None:
        t = t[t != task.info.ignore_index]
    counts = torch.bincount(t, minlength=task.info.num_classes)[: task.info.num_classes].double()
    present = counts > 0
    w = counts.sum() / (present.sum() * counts.clamp(min=1))
    w = torch.where(present, w, w[present].max())
    if cap is not None:
        w = w.clamp(max=cap * float(w.min()))
    return w.float().to(device)


@dataclass(frozen=True)
class Joint:
    """Joint training of a ``multi_head`` network (bench.models.joint): the dense and the global task's training
    batches of the same images, drawn together, and the loss ``weights[0]`` · CE(dense head, masks) +
    ``weights[1]`` · CE(global head, image labels), each with its own task's class weights. ``own``: the head of
    the cell that trains it (its final loss is the cell's ``final_loss``); the training never depends on it, so
    the two cells of a joint network train the same network."""

    dense: Task
    global_: Task
    weights: tuple[float, float]
    own: Literal["dense", "global"]

    def batches(self, batch_size: int, **kw) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]]:
        """(images, (masks, labels)): the two tasks' batches, which must hold the same images in the same order
        with the same augmentation; the first that differs stops the training."""
        dense, glob = self.dense.train.batches(batch_size, **kw), self.global_.train.batches(batch_size, **kw)
        for i, ((x, y_dense), (x_global, y_global)) in enumerate(zip(dense, glob, strict=True)):
            if x.shape != x_global.shape or not torch.equal(x, x_global):
                raise BenchError(f"multi_head: the dense and the global task's training batch {i} (epoch "
                                 f"{kw.get('epoch', 0)}) hold different images; give both tasks the same images "
                                 "(the same generator parameters, or classify_from_masks of the dense task)")
            yield x, (y_dense, y_global)


def ignore_of(task: Task) -> int:
    return task.info.ignore_index if task.info.ignore_index is not None else -100


def joint_loss(logits: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor],
               weights: tuple[float, float], class_weights: tuple[torch.Tensor | None, torch.Tensor | None],
               ignore: tuple[int, int], label_smoothing: float) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """(the weighted sum of the two heads' cross-entropies, each head's own), computed in fp32 at any precision."""
    parts = tuple(F.cross_entropy(out.float(), y, weight=w, ignore_index=i, label_smoothing=label_smoothing)
                  for out, y, w, i in zip(logits, targets, class_weights, ignore))
    return weights[0] * parts[0] + weights[1] * parts[1], parts  # type: ignore[return-value]


def train(model: nn.Module, task: Task, cfg: TrainConfig, *, seed: int, device: torch.device,
          checkpoint: Path | None = None, on_step: Callable[[int, int, float], None] | None = None,
          resume: dict | None = None, joint: Joint | None = None,
          on_log: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Train ``model`` in place; return a log (steps, final loss, precision, images/s, wall time).

    ``on_log(step, {"loss": .., "lr": ..})`` after every step (experiment tracking, bench.tracking: the lr the step
    used). ``checkpoint``: where each epoch's state is written; ``resume``: a state read back from it by the
    run folder's loader (``RunDir.load_checkpoint``), which checks it first. ``joint``: train both heads of a
    ``multi_head`` network on its two tasks (``task`` is one of them); the model reads ``joint.own`` after."""
    if joint is None:
        return _train(model, task, cfg, seed=seed, device=device, checkpoint=checkpoint, on_step=on_step,
                      resume=resume, on_log=on_log)
    set_read(model, "both")
    try:
        return _train(model, task, cfg, seed=seed, device=device, checkpoint=checkpoint, on_step=on_step,
                      resume=resume, joint=joint, on_log=on_log)
    finally:
        set_read(model, joint.own)


def _train(model: nn.Module, task: Task, cfg: TrainConfig, *, seed: int, device: torch.device,
           checkpoint: Path | None = None, on_step: Callable[[int, int, float], None] | None = None,
           resume: dict | None = None, joint: Joint | None = None,
           on_log: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    per_epoch = math.ceil(len(task.train) / cfg.batch_size) if world == 1 else len(task.train) // (cfg.batch_size * world)
    if cfg.max_steps_per_epoch:
        per_epoch = min(per_epoch, cfg.max_steps_per_epoch)
    if per_epoch < 1:
        raise BenchError(f"train.batch_size: {cfg.batch_size} x {world} process(es) is more than the "
                         f"{len(task.train)} training examples; lower it")
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
    precision = resolve_precision(cfg.amp, device)  # recorded: a cell's precision is part of its identity
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    ignore = ignore_of(task)
    weight = class_weights(task, cfg.class_weights, device, cfg.class_weight_cap)
    if joint is not None:  # each head's loss weighs its classes by its own task's labels
        pair = (joint.dense, joint.global_)
        joint_weights = tuple(class_weights(t, cfg.class_weights, device, cfg.class_weight_cap) for t in pair)
        joint_ignore = tuple(ignore_of(t) for t in pair)
    source = task.train if joint is None else joint
    joint_value = float("nan")
    step, images, loss_value, t0 = 0, 0, float("nan"), time.perf_counter()
    recent: list[float] = []  # the own loss of the last steps_per_epoch steps: their mean is recorded
    if resume is not None:
        state = resume
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state.get("scaler") or scaler.state_dict())
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, loss_value = int(state["step"]), float(state["loss"])
        joint_value = float(state.get("joint_loss", "nan"))
        recent = [float(v) for v in state.get("recent_losses", [])]
    resumed_from = step
    net.train()
    while step < total:
        epoch = step // per_epoch
        seed_host_rngs(seed, epoch)
        for i, (x, y) in enumerate(source.batches(cfg.batch_size, train=True, epoch=epoch, seed=seed,
                                                  rank=rank, world=world)):
            if i < step % per_epoch:  # only when resuming mid-epoch
                continue
            x = x.to(device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, cfg.amp):
                logits = net(x)
            if joint is None:
                y = y.to(device, non_blocking=True)
                loss = F.cross_entropy(logits.float(), y, weight=weight, ignore_index=ignore,  # fp32 at any precision
                                       label_smoothing=cfg.label_smoothing)
            else:
                targets = tuple(t.to(device, non_blocking=True) for t in y)
                loss, parts = joint_loss(logits, targets, joint.weights, joint_weights, joint_ignore,
                                         cfg.label_smoothing)
                own = parts[0 if joint.own == "dense" else 1]
            if not torch.isfinite(loss):
                raise DivergedError(f"loss is {loss.item()} at step {step} (lr {sched.get_last_lr()[0]:.3g})")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            lr = opt.param_groups[0]["lr"] if on_log is not None else 0.0  # the lr this step used
            sched.step()
            phase_step()  # a profiler sampling training steps advances (bench.phases; nothing otherwise)
            step, images = step + 1, images + len(x)
            loss_value = loss.item() if joint is None else own.item()
            recent = [*recent[1 - per_epoch:], loss_value] if per_epoch > 1 else [loss_value]
            if joint is not None:
                joint_value = loss.item()
            if on_step is not None:
                on_step(step, total, loss_value)
            if on_log is not None:
                on_log(step, {"loss": loss_value, "lr": lr})
            if step % per_epoch == 0 or step >= total:
                break
        if checkpoint is not None and rank == 0:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                     "step": step, "loss": loss_value, "recent_losses": recent, "precision": precision,
                     **({} if joint is None else {"joint_loss": joint_value})}
            atomic_write(checkpoint, lambda f, s=state: torch.save(s, f), mode="wb")
    wall = time.perf_counter() - t0
    extra = {} if joint is None else {"final_joint_loss": round(joint_value, 6)}
    last_epoch = round(sum(recent) / len(recent), 6) if recent else None  # an epoch's worth of steps, however
    # the epochs fall: a fractional last epoch does not shrink it to one batch
    return {"steps": total, "steps_per_epoch": per_epoch, "final_loss": round(loss_value, 6),
            "last_epoch_loss": last_epoch, "precision": precision,
            "resumed_from_step": resumed_from,  # 0: trained from scratch; else the checkpoint it continued
            "images_per_s": round(images * world / wall, 1) if images else None, "wall_s": round(wall, 3), **extra}
