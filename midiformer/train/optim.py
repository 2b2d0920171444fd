"""The optimizer, chosen by `optim` (conf/optim/*.yaml), and its learning-rate schedule: linear
warm-up, then cosine decay to min_lr_ratio * lr.

An optimizer is one registered function `(params, lr, **its options) -> torch.optim.Optimizer`; it
gets the options of its YAML that the trainer does not read itself (TRAINER_OPTIONS). Weight decay is
set per parameter group (configure_optimizer_groups), the same for every optimizer.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from midiformer.common import ConfigError, is_number, positive
from midiformer.model import configure_optimizer_groups
from midiformer.registry import Registry

OPTIMIZERS = Registry("optim")

# Options of every conf/optim/*.yaml read by the trainer, the schedule or configure_optimizer_groups;
# the rest go to the optimizer's function.
TRAINER_OPTIONS = ("name", "lr", "weight_decay", "warmup_steps", "min_lr_ratio", "grad_clip", "grad_accum_steps",
                   "swa")


@OPTIMIZERS.register("adamw")
def adamw(params, lr: float, betas=(0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the gradient."""
    if len(betas) != 2 or not all(is_number(b) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"optim.betas={list(betas)!r} must be two numbers in [0, 1)")
    if not positive(eps):
        raise ConfigError(f"optim.eps={eps!r} must be a number > 0")
    # fused (one kernel for every parameter) on CUDA; the CPU keeps the foreach implementation
    on_cuda = all(p.is_cuda for group in params for p in (group["params"] if isinstance(group, dict) else [group]))
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, **({"fused": True} if on_cuda else {}))


@OPTIMIZERS.register("sgd")
def sgd(params, lr: float, momentum: float = 0.9, nesterov: bool = True) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum; weight decay is L2 on the decayed group, as torch's SGD applies it."""
    if not (is_number(momentum) and 0 <= momentum < 1):
        raise ConfigError(f"optim.momentum={momentum!r} must be a number in [0, 1)")
    if nesterov and momentum == 0:
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=bool(nesterov))


def _optimizer_options(optim_cfg: Any) -> dict[str, Any]:
    return {key: value for key, value in dict(optim_cfg).items() if key not in TRAINER_OPTIONS}


def build_optimizer(model: torch.nn.Module, optim_cfg: Any) -> torch.optim.Optimizer:
    groups = configure_optimizer_groups(model, optim_cfg.weight_decay)
    return OPTIMIZERS.get(optim_cfg.name)(groups, lr=optim_cfg.lr, **_optimizer_options(optim_cfg))


def check_optimizer(optim_cfg: Any) -> None:
    """Refuse an unknown optimizer, an option it does not take, or a bad value, before any work."""
    make = OPTIMIZERS.get(optim_cfg.name)
    options = _optimizer_options(optim_cfg)
    try:
        inspect.signature(make).bind(params=[], lr=1.0, **options)
    except TypeError as error:
        raise ConfigError(f"optim={optim_cfg.name!r}: {error}; options given: {sorted(options) or 'none'}") from None
    make([torch.zeros(1, requires_grad=True)], lr=1.0, **options)


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at `step` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg, max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, optim_cfg.warmup_steps, max_steps, optim_cfg.min_lr_ratio))
