"""Ordered values (time gaps, velocities) as numbers, not only as table entries.

A gap of 47 grid steps and one of 48 are nearly the same music, and a velocity of 80 is louder than 60.
A plain table learns each of its values on its own, from the few times it occurs. With
`model.ordinal: {time: 4, velocity: 4}` a field's value v is also seen as a number:

    embedding:  E[v] + W phi(v)                  phi: v / V, log(1 + v) / log V, sin and cos of 2 pi v / P
    logits:     l[v] = (W_free h)[v] + log p_mix(v | h)

p_mix is a mixture of K discretised logistics over 0..V-1 (Salimans et al. 2017, PixelCNN++): each
component puts its mass on a neighbourhood of values, so what is learned at v carries to v +- 1.
The free table stays, so a song that keeps to a few exact values (every velocity 80 or 100) is still
coded by them. Both are logits of one categorical: masks, sampling and bits per event are unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# periods (in values) of the sine features: powers of 2 and 3x powers of 2, so that a beat of 96 or
# 480 steps, its halves and thirds, and octaves of velocity all have a feature that repeats with them
PERIODS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384)


def value_features(values: torch.Tensor, size: int) -> torch.Tensor:
    """values (...) integers in 0..size-1 -> (..., 2 + 2 * len(PERIODS)) numeric features."""
    v = values.float().unsqueeze(-1)
    angles = 2 * math.pi * v / torch.tensor(PERIODS, dtype=v.dtype, device=v.device)
    return torch.cat([v / (size - 1), torch.log1p(v) / math.log(size), angles.sin(), angles.cos()], dim=-1)


class OrdinalEmbedding(nn.Module):
    def __init__(self, size: int, d_model: int):
        super().__init__()
        self.size = size
        self.table = nn.Embedding(size, d_model)
        self.numeric = nn.Linear(2 + 2 * len(PERIODS), d_model, bias=False)

    @property
    def weight(self) -> torch.Tensor:  # the value table a reader of `embed[k].weight` expects
        return self.table.weight

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.table(values) + self.numeric(value_features(values, self.size))


def discretised_logistic_log_probs(logit_weights: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                                   size: int) -> torch.Tensor:
    """(..., K) mixture parameters -> (..., size) log p(v) of the mixture, v = 0..size-1. The first and
    last values take the tails (-inf, 0.5] and [size - 1.5, inf), so the masses sum to 1."""
    v = torch.arange(size, dtype=means.dtype, device=means.device)
    inv_scale = torch.exp(-log_scales).unsqueeze(-1)                       # (..., K, 1)
    centred = v - means.unsqueeze(-1)                                      # (..., K, V)
    upper, lower = (centred + 0.5) * inv_scale, (centred - 0.5) * inv_scale
    cdf_upper = torch.where(v < size - 1, torch.sigmoid(upper), torch.ones_like(upper))
    cdf_lower = torch.where(v > 0, torch.sigmoid(lower), torch.zeros_like(lower))
    mass = cdf_upper - cdf_lower
    # where the mass underflows (far in a tail), the density at the centre times the bin width of 1
    log_density = (centred * inv_scale) - log_scales.unsqueeze(-1) - 2 * F.softplus(centred * inv_scale)
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density)
    return torch.logsumexp(torch.log_softmax(logit_weights, dim=-1).unsqueeze(-1) + log_mass, dim=-2)


class OrdinalLinear(nn.Module):
    """h (..., d) -> logits (..., size): a free linear table plus the log-probabilities of a K-logistic mixture."""

    def __init__(self, d_model: int, size: int, components: int):
        super().__init__()
        self.size, self.components = size, components
        self.free = nn.Linear(d_model, size)
        self.mixture = nn.Linear(d_model, 3 * components)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weights, centre, scale = self.mixture(h).float().chunk(3, dim=-1)
        means = torch.sigmoid(centre) * (self.size - 1)
        # a smooth floor of 0.3 values (a component never collapses to a point); wide (a quarter of the
        # range) at the start, when the head's outputs are near 0, so that no value starts far in a tail
        log_scales = torch.logaddexp(scale + math.log(self.size / 4), torch.tensor(math.log(0.3)))
        return self.free(h) + discretised_logistic_log_probs(weights, means, log_scales, self.size).to(h.dtype)
