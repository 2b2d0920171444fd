"""Positions: how the model knows where an event is in the window, one registered class each, chosen
by `model/pos` (conf/model/pos/*.yaml).

A positions module is built as `POSITIONS.build(cfg.model.pos, d_model=d, n_head=h, max_seq_len=n)`
and called once per forward pass on the summed input embedding of rows start..end-1 (before that,
`check_shape(d_model, n_head)` refuses a shape the positions cannot serve, without building anything):

    x, rope = positions(x, start, ticks)   # x (B, T, d); ticks (B, T) each row's grid tick, given when the
                                           # class sets needs_ticks; rope: (cos, sin) for attention, or None

`learned` adds a position vector to x; `rope` leaves x alone and returns the rotation that every
attention layer applies to its queries and keys (apply_rope); `rope_time` rotates by the music's
time as well as by the row index.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from midiformer.common import ConfigError
from midiformer.registry import Registry

POSITIONS = Registry("model.pos")

Rope = tuple[torch.Tensor, torch.Tensor]


@POSITIONS.register("learned")
class LearnedPositions(nn.Embedding):
    """A learned table (max_seq_len, d_model) added to the input (GPT-2). An nn.Embedding, so that the
    inits and the optimizer's no-decay group treat it as one; its state is `pos_embed.weight`."""

    needs_ticks = False

    def __init__(self, d_model: int, n_head: int, max_seq_len: int):
        super().__init__(max_seq_len, d_model)

    @staticmethod
    def check_shape(d_model: int, n_head: int) -> None:
        """Any width and head count will do."""

    def forward(self, x: torch.Tensor, start: int = 0, ticks: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        return x + self.weight[start:start + x.shape[1]], None


# Rotary position embedding (Su et al. 2021): rotate each (even, odd) pair of q and k channels by an
# angle proportional to the position, so q·k depends on the positions only through their difference.

def rope_angles(head_dim: int, max_seq_len: int, base: float = 10000.0) -> Rope:
    """cos and sin (max_seq_len, head_dim / 2) of angle t * base^(-2i / head_dim)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(max_seq_len).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D) rotated pairwise: (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos); cos, sin (T, D/2),
    or (B, 1, T, D/2) when the angles differ between the batch's rows (rope_time)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


@POSITIONS.register("rope")
class RotaryPositions(nn.Module):
    """Rotary positions, applied to queries and keys inside attention; nothing is learned or saved."""

    needs_ticks = False

    def __init__(self, d_model: int, n_head: int, max_seq_len: int, base: float = 10000.0):
        super().__init__()
        self.check_shape(d_model, n_head)
        cos, sin = rope_angles(d_model // n_head, max_seq_len, base)
        self.register_buffer("cos", cos, persistent=False)  # recomputed on load: not in the state dict
        self.register_buffer("sin", sin, persistent=False)

    @staticmethod
    def check_shape(d_model: int, n_head: int) -> None:
        """Channels rotate in pairs: the head size must be even."""
        if (d_model // n_head) % 2:
            raise ConfigError(f"model.pos=rope needs an even head size; d_model / n_head = {d_model // n_head}")

    def forward(self, x: torch.Tensor, start: int = 0, ticks: torch.Tensor | None = None) -> tuple[torch.Tensor, Rope]:
        end = start + x.shape[1]
        return x, (self.cos[start:end], self.sin[start:end])


@POSITIONS.register("rope_time")
class TimeRotaryPositions(RotaryPositions):
    """Rotary positions over two clocks: the first half of each head's channel pairs turns with the row
    index (as rope), the second half with the row's time on the codec grid, so that an attention score
    can depend on how far apart two events are in beats (relative time, as in Huang et al. 2018's
    Music Transformer), which the row index alone does not say: a chord is many rows and no time.

        angle_i(t) = tick(t) * 2 pi / period_i,   periods geometric from ticks_per_beat / 8 to 64 beats
    """

    needs_ticks = True

    def __init__(self, d_model: int, n_head: int, max_seq_len: int, base: float = 10000.0, ticks_per_beat: int = 96,
                 shortest_beats: float = 0.125, longest_beats: float = 64.0, time_share: float = 0.5):
        self.check_shape(d_model, n_head)
        if not 0 <= time_share <= 1:
            raise ConfigError(f"model.pos.time_share={time_share} must be in [0, 1]")
        pairs = d_model // n_head // 2
        self.time_pairs = round(pairs * time_share)
        super().__init__(2 * (pairs - self.time_pairs) * n_head, n_head, max_seq_len, base)
        periods = torch.logspace(math.log10(shortest_beats * ticks_per_beat), math.log10(longest_beats * ticks_per_beat),
                                 self.time_pairs, dtype=torch.float64)
        self.register_buffer("time_freq", 2 * math.pi / periods, persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0, ticks: torch.Tensor | None = None) -> tuple[torch.Tensor, Rope]:
        _, (cos, sin) = super().forward(x, start)
        # float64, then the angle modulo 2 pi: a tick deep in a long song keeps its precision
        angles = torch.remainder(ticks.double().unsqueeze(-1) * self.time_freq, 2 * math.pi).to(cos.dtype)
        batch = ticks.shape[0]
        cos = torch.cat([cos.expand(batch, -1, -1), angles.cos()], dim=-1).unsqueeze(1)
        sin = torch.cat([sin.expand(batch, -1, -1), angles.sin()], dim=-1).unsqueeze(1)
        return x, (cos, sin)
