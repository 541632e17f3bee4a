"""Optimisers and learning-rate schedules, all stepped once per iteration.

`cosine_restarts` changes the rate only at epoch boundaries (the fork's per-epoch
CosineAnnealingWarmRestarts) but is still driven by the per-iteration step count.
"""

from __future__ import annotations

import bisect
import math
from typing import Iterable

import torch

from ffcore.engine.config import TrainConfig


def _parameter_groups(parameters: Iterable[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    # Biases and normalisation weights (1-D tensors) are not decayed, as in most detector recipes.
    decay, no_decay = [], []
    for p in parameters:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(parameters: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.decay_all_parameters:
        groups = [{"params": [p for p in parameters if p.requires_grad], "weight_decay": config.weight_decay}]
    else:
        groups = _parameter_groups(parameters, config.weight_decay)
    # fused: one kernel for every parameter instead of foreach's op per parameter list (None: torch's default)
    fused = True if config.fused_optimizer else None
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=fused)
    if config.optimizer == "adam":   # L2 penalty added to the gradient, as torch.optim.Adam does
        return torch.optim.Adam(groups, lr=config.lr, fused=fused)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    raise ValueError(f"unknown optimizer {config.optimizer!r} in the training config; use 'adamw', 'adam' or 'sgd'")


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Multiplier of the base lr at iteration `step` for the LambdaLR-based schedules."""
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "warmup_cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        floor = config.min_lr / config.lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if config.schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        return config.step_gamma ** bisect.bisect_right(sorted(config.step_milestones), epoch)
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "cosine_restarts":
        # CosineAnnealingWarmRestarts(T_0, T_mult=1, eta_min=min_lr) stepped once per epoch, in closed form
        period = config.restart_epochs or config.epochs
        epoch_in_cycle = (step // max(1, steps_per_epoch)) % period
        floor = config.min_lr / config.lr
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * epoch_in_cycle / period))
    raise ValueError(f"unknown schedule {config.schedule!r}; "
                     "use onecycle, warmup_cosine, step, constant or cosine_restarts")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    total_steps = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps,
                                                   pct_start=config.onecycle_pct_start)
    lr_factor(0, total_steps, steps_per_epoch, config)   # validates the schedule name now, not mid-run
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, config))
