"""The optimizer and its learning-rate schedule: AdamW, linear warm-up, cosine decay."""
from __future__ import annotations

import math

import torch

from midiformer.model import configure_optimizer_groups


def build_optimizer(model: torch.nn.Module, optim_cfg) -> torch.optim.AdamW:
    """AdamW; fused (one kernel for every parameter) when the model is on CUDA. CPU keeps the foreach
    implementation, whose results the CPU tests and existing checkpoints were made with."""
    groups = configure_optimizer_groups(model, optim_cfg.weight_decay)
    on_cuda = all(p.is_cuda for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps,
                             **({"fused": True} if on_cuda else {}))


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg, max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, optim_cfg.warmup_steps, max_steps, optim_cfg.min_lr_ratio))
