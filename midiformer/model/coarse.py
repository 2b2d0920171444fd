"""Coarse-and-fine value tables for the fields with many ordered values (time, velocity).

A gap of 47 grid steps and one of 48 are nearly the same music; a plain table learns each value on its
own. With `model.coarse_bins: {time: 12, velocity: 4}` a value v also gets the parameters of its bin
v // f, shared with its neighbours:

    embedding:  E[v] + E_coarse[v // f]                 (the input row)
    logits:     l[v] = W h + (W_coarse h)[v // f]       (the prediction: the bin's logit is shared)

Nothing is lost: every value keeps its own parameters and its own probability. (Hierarchical output
tables in the spirit of Goodman 2001's class-based softmax, additive rather than factorised.)
"""
from __future__ import annotations

import torch
from torch import nn


class CoarseEmbedding(nn.Module):
    def __init__(self, size: int, d_model: int, factor: int):
        super().__init__()
        self.factor = factor
        self.fine = nn.Embedding(size, d_model)
        self.coarse = nn.Embedding(-(-size // factor), d_model)

    @property
    def weight(self) -> torch.Tensor:  # the value table a reader of `embed[k].weight` expects
        return self.fine.weight

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.fine(values) + self.coarse(values.div(self.factor, rounding_mode="floor"))


class CoarseLinear(nn.Module):
    def __init__(self, d_model: int, size: int, factor: int):
        super().__init__()
        self.fine = nn.Linear(d_model, size)
        self.coarse = nn.Linear(d_model, -(-size // factor))
        self.register_buffer("bin", torch.arange(size) // factor, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fine(h) + self.coarse(h)[..., self.bin]


def embedding(size: int, d_model: int, factor: int | None) -> nn.Module:
    return CoarseEmbedding(size, d_model, factor) if factor and factor > 1 else nn.Embedding(size, d_model)


def linear(d_model: int, size: int, factor: int | None) -> nn.Module:
    return CoarseLinear(d_model, size, factor) if factor and factor > 1 else nn.Linear(d_model, size)
