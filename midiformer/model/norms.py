"""Normalisation layers, one registered class each, chosen by `model/norm` (conf/model/norm/*.yaml).

Every norm is built as `NORMS.build(cfg.model.norm, d_model=d)` and normalises the last dimension.
`embedding_norm()` is the norm applied to the summed input embedding: nothing, except for FixNorm.

Where a block's norms sit around its two residual branches is `model.norm_position` (NORM_POSITIONS):
`residual(x, branch, norm)` is one branch with its norm, and `final_norm` says whether the stream
needs a norm after the last block.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from midiformer.registry import Registry

NORMS = Registry("model.norm")
NORM_POSITIONS = Registry("model.norm_position")


class Norm(nn.Module):
    """Base class: a block norm, plus the norm (identity by default) for the summed input embedding."""

    def embedding_norm(self) -> nn.Module:
        return nn.Identity()


@NORMS.register("layernorm")
class LayerNorm(Norm):
    """Ba et al. 2016: y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


@NORMS.register("rmsnorm")
class RMSNorm(Norm):
    """Zhang & Sennrich 2019: y = x / sqrt(mean(x^2) + eps) * weight (no centring, no bias)."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


@NORMS.register("scalenorm")
class ScaleNorm(Norm):
    """Nguyen & Salazar 2019 ("Transformers without Tears"): y = g * x / max(||x||, eps), g one scalar."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.d_model = d_model
        self.g = nn.Parameter(torch.tensor(math.sqrt(d_model)))  # sqrt(d): unit RMS per component at init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g * x / x.norm(dim=-1, keepdim=True).clamp(min=self.eps)


@NORMS.register("fixnorm")
class FixNorm(ScaleNorm):
    """Nguyen & Salazar 2019's "ScaleNorm + FixNorm": ScaleNorm in the blocks, and the summed input
    embedding set to unit length times its own learned scale (FixNorm, Nguyen & Chiang 2018)."""

    def embedding_norm(self) -> nn.Module:
        # Unit length times a learned scale is ScaleNorm's formula; a separate g, also started at
        # sqrt(d) so that positions (learned, added after) and embeddings start on the same scale.
        return ScaleNorm(self.d_model, self.eps)


@NORMS.register("none")
class NoNorm(Norm):
    """The identity: for T-Fixup, which trains without normalisation."""

    def __init__(self, d_model: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# --- where the norm sits around a residual branch ---------------------------------------------------

class NormPosition:
    """One residual branch with its norm: `residual(x, branch, norm)`."""

    final_norm: bool  # does the residual stream need a norm after the last block?

    def __call__(self, x: torch.Tensor, branch: Callable[[torch.Tensor], torch.Tensor], norm: nn.Module) -> torch.Tensor:
        raise NotImplementedError


@NORM_POSITIONS.register("pre")
class PreNorm(NormPosition):
    """x + f(norm(x)) (GPT-2): the stream itself is never normalised, so a final norm follows the blocks."""

    final_norm = True

    def __call__(self, x, branch, norm):
        return x + branch(norm(x))


@NORM_POSITIONS.register("post")
class PostNorm(NormPosition):
    """norm(x + f(x)) (Vaswani et al. 2017): every block already ends normalised."""

    final_norm = False

    def __call__(self, x, branch, norm):
        return norm(x + branch(x))
