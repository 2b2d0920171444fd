"""trainer/precision: how the forward pass is cast, one registered choice each.

A Precision gives an autocast context for the forward pass and a GradScaler (a no-op one unless
fp16, whose small range needs loss scaling against underflow).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from midiformer.common import ConfigError
from midiformer.registry import Registry

PRECISIONS = Registry("trainer/precision")


@dataclass
class Precision:
    name: str
    device_type: str
    dtype: torch.dtype | None  # None: no autocast
    scaler: torch.amp.GradScaler

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def _disabled_scaler(device_type: str) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device_type, enabled=False)


@PRECISIONS.register("fp32")
def fp32(device_type: str) -> Precision:
    return Precision("fp32", device_type, None, _disabled_scaler(device_type))


@PRECISIONS.register("bf16-mixed")
def bf16_mixed(device_type: str) -> Precision:
    return Precision("bf16-mixed", device_type, torch.bfloat16, _disabled_scaler(device_type))


@PRECISIONS.register("fp16-mixed")
def fp16_mixed(device_type: str, init_scale: float = 2.0**16) -> Precision:
    if device_type != "cuda":
        raise ConfigError("trainer/precision=fp16-mixed needs CUDA; on CPU use fp32 (or bf16-mixed)")
    return Precision("fp16-mixed", device_type, torch.float16, torch.amp.GradScaler("cuda", init_scale=init_scale))


@PRECISIONS.register("auto")
def auto(device_type: str) -> Precision:
    # On CUDA bf16 is the fast choice. On a CPU its speed depends on the CPU's bf16 instructions (1.40x
    # fp32 on the paper table's machine, docs/paper-table.md): too varied to guess, so an explicit choice.
    return bf16_mixed(device_type) if device_type == "cuda" else fp32(device_type)
