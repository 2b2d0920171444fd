"""MidiGPT: a decoder-only transformer over MIDI events (one row of integer fields per event).

    inputs (B, T, F) ─▶ Σ_f Embedding_f (+ intervals, model.relative_inputs) ─▶ embedding norm (FixNorm only)
        ─▶ positions ─▶ n_layer × Block(attention, MLP) ─▶ final norm ─▶ heads ─▶ {field: logits (B, T, V_f)}
                                                    inputs, and SongStart's counts ─▶ ┘ (heads that remember the rows)

Logits at position t predict the fields of event t+1. Positions are learned (added to the input) or
rotary (applied to queries and keys inside attention). Positions, norms and where they sit, inits and
heads come from their registries (positions.py, norms.py, init.py, heads.py); `model_cfg` is the
`cfg.model` node of conf/model/*.yaml.
For generation, `next_context(new_rows, kv_cache)` runs only the new rows, attends to the keys and
values cached for the earlier ones, and gives field_logits what it needs (sampling.py).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from midiformer.codec.events import CHANNEL, FIELDS, NOTE_ON, TYPE, VOCAB
from midiformer.codec.grammar import onset_ticks
from midiformer.common import ConfigError
from midiformer.model.heads import HEADS, Memory, SongCounts
from midiformer.model.init import EMBEDDING_INITS, INITS
from midiformer.model.norms import NORM_POSITIONS, NORMS, NormPosition
from midiformer.model.played import RELATIVE_COLUMNS, last_note_by_channel, note_of_channel  # registers its heads
from midiformer.model.positions import POSITIONS, Rope, apply_rope
from midiformer.model.values import ValueTables
from midiformer.registry import Registry

BEATS_PER_BAR = 4  # the codec keeps no time signature: 4/4, the common case, for the bar-position input


# ---------------------------------------------------------------------------------------------------
# KV cache for incremental decoding: each block keeps the keys and values of the events already seen,
# so that the next event costs one row of attention instead of recomputing the whole window.

class LayerCache:
    """One block's keys and values (B, H, max_seq_len, D), filled from the left; `length` rows are valid."""

    def __init__(self, max_seq_len: int):
        self.max_seq_len, self.length = max_seq_len, 0
        self.keys = self.values = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H, T, D) after the cached rows; return every key and value so far."""
        if self.keys is None:  # allocated once: no copy of the whole cache per new event
            shape = (*k.shape[:2], self.max_seq_len, k.shape[3])
            self.keys, self.values = k.new_empty(shape), v.new_empty(shape)
        end = self.length + k.shape[2]
        self.keys[:, :, self.length:end], self.values[:, :, self.length:end] = k, v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """The caches of every block; len() = events already seen (the position of the next one), and the
    grid tick of the last of them (for the beat-phase input and rope_time)."""

    def __init__(self, n_layer: int, max_seq_len: int):
        self.layers = [LayerCache(max_seq_len) for _ in range(n_layer)]
        self.head = LayerCache(max_seq_len)  # the look-up keys and values of heads that remember the rows
        self.relative: tuple | None = None  # what cascade_relative carries: each channel's last note, the last gap
        self.input_notes: torch.Tensor | None = None  # each channel's last note before the next row (relative_inputs)
        self.rows: torch.Tensor | None = None  # what cascade_cache counts: the rows so far, and the song's counts
        self.song_counts: tuple | None = None  # before them (played.py PlayedCounts)
        self.ticks: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.layers[0].length


# ---------------------------------------------------------------------------------------------------
# The transformer block

class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float):
        super().__init__()
        self.n_head = n_head
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)  # the residual output projection
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)

    def forward(self, x: torch.Tensor, rope: Rope | None = None, cache: LayerCache | None = None) -> torch.Tensor:
        q, k, v = self.split_heads(self.q(x)), self.split_heads(self.k(x)), self.split_heads(self.v(x))
        if rope is not None:  # the one place where rotary positions enter
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is None:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:
            k, v = cache.append(k, v)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask_after(q.shape[2], k.shape[2], q.device))
        y = y.transpose(1, 2).contiguous().view_as(x)
        return self.resid_dropout(self.proj(y))


def causal_mask_after(n_new: int, n_all: int, device: torch.device) -> torch.Tensor | None:
    """Mask for n_new queries that follow n_all - n_new cached keys: query i sees keys up to its own
    position. (is_causal=True aligns the mask top-left, which is wrong when keys outnumber queries.)"""
    if n_new == 1:  # the usual decoding step: the one new event sees everything
        return None
    return torch.ones(n_new, n_all, dtype=torch.bool, device=device).tril(n_all - n_new)


class MLP(nn.Module):
    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)  # the residual output projection
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Attention then MLP, each a residual branch with its norm where model.norm_position puts it:
    pre  x + f(norm(x))  (GPT-2) or post  norm(x + f(x))  (Vaswani et al. 2017); see norms.py."""

    def __init__(self, d_model: int, n_head: int, dropout: float, make_norm: Callable[[], nn.Module],
                 residual: NormPosition):
        super().__init__()
        self.residual = residual
        self.norm1, self.attn = make_norm(), CausalSelfAttention(d_model, n_head, dropout)
        self.norm2, self.mlp = make_norm(), MLP(d_model, dropout)

    def forward(self, x: torch.Tensor, rope: Rope | None = None, cache: LayerCache | None = None) -> torch.Tensor:
        x = self.residual(x, lambda y: self.attn(y, rope, cache), self.norm1)
        return self.residual(x, self.mlp, self.norm2)


# ---------------------------------------------------------------------------------------------------
# The model

class MidiGPT(nn.Module):
    def __init__(self, model_cfg: Any):
        super().__init__()
        validate_model_config(model_cfg)
        cfg = model_cfg
        self.d_model, self.max_seq_len, self.fields = cfg.d_model, cfg.max_seq_len, FIELDS
        make_norm = lambda: NORMS.build(cfg.norm, d_model=cfg.d_model)  # noqa: E731

        tables = ValueTables.from_config(cfg, VOCAB)  # plain, coarse-binned or ordinal values: model/values.py
        self.embed = nn.ModuleList(tables.embedding(name, VOCAB[name], cfg.d_model) for name in FIELDS)
        # Where each row falls in the beat and in a 4-beat bar (from the running sum of the time gaps):
        # the metrical position that REMI spells out as Bar/Position tokens, given to the model directly.
        self.ticks_per_beat = cfg.ticks_per_beat if cfg.get("beat_phase") else None
        if self.ticks_per_beat:
            self.beat_phase_embed = nn.Embedding(self.ticks_per_beat, cfg.d_model)
            self.bar_beat_embed = nn.Embedding(BEATS_PER_BAR, cfg.d_model)
        # A note-on row also as steps from its channel's last note (interval, change of velocity and of
        # duration): what a melody or a crescendo repeats, whatever its pitch or loudness.
        self.interval_embed = nn.ModuleList(nn.Embedding(2 * VOCAB[FIELDS[c]] - 1, cfg.d_model) for c in RELATIVE_COLUMNS
                                            ) if cfg.get("relative_inputs") else None
        self.embed_norm = make_norm().embedding_norm()
        self.pos_embed = POSITIONS.build(cfg.pos, d_model=cfg.d_model, n_head=cfg.n_head, max_seq_len=cfg.max_seq_len)
        self.drop = nn.Dropout(cfg.dropout)
        residual = NORM_POSITIONS.build(cfg.norm_position)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_head, cfg.dropout, make_norm, residual) for _ in range(cfg.n_layer))
        self.final_norm = make_norm() if residual.final_norm else nn.Identity()  # post-norm blocks end normalised
        self.heads = HEADS.build(cfg.heads, d_model=cfg.d_model, vocab=VOCAB, tables=tables, n_head=cfg.n_head)

        INITS.build(cfg.init, model=self)
        EMBEDDING_INITS.build(cfg.embedding_init, model=self)

    def new_kv_cache(self) -> KVCache:
        return KVCache(len(self.blocks), self.max_seq_len)

    def hidden(self, inputs: torch.Tensor, kv_cache: KVCache | None = None,
               start_ticks: torch.Tensor | None = None) -> torch.Tensor:
        """inputs (B, T, F) -> final hidden states (B, T, d); row t sees events 0..t only.
        With a kv_cache, inputs are the events that follow the cached ones (positions shift by its length).
        start_ticks (B,): grid tick of the row before inputs[:, 0] (None: inputs begin a song, or follow the cache)."""
        return self.run(inputs, kv_cache, start_ticks)[0]

    def run(self, inputs: torch.Tensor, kv_cache: KVCache | None = None, start_ticks: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, Rope | None]:
        """hidden's work -> (hidden states (B, T, d), the input rows' embeddings (B, T, d), the rotation or None)."""
        start = len(kv_cache) if kv_cache is not None else 0
        end = start + inputs.shape[1]
        if end > self.max_seq_len:
            raise ValueError(f"sequence of {end} events is longer than model.max_seq_len={self.max_seq_len}")
        x = sum(table(inputs[..., k]) for k, table in enumerate(self.embed))
        if self.interval_embed is not None:
            x = x + self.intervals(inputs, kv_cache)
        x = self.embed_norm(x)
        ticks = None
        if self.ticks_per_beat or getattr(self.pos_embed, "needs_ticks", False):
            if start_ticks is None and kv_cache is not None:
                start_ticks = kv_cache.ticks
            ticks = onset_ticks(inputs, start_ticks)
            if kv_cache is not None:
                kv_cache.ticks = ticks[:, -1]
        if self.ticks_per_beat:
            beat = ticks.div(self.ticks_per_beat, rounding_mode="floor")
            x = x + self.beat_phase_embed(ticks % self.ticks_per_beat) + self.bar_beat_embed(beat % BEATS_PER_BAR)
        rows = x
        x, rope = self.pos_embed(x, start, ticks)  # learned: added to x; rope: rotations for attention
        x = self.drop(x)
        caches = kv_cache.layers if kv_cache is not None else [None] * len(self.blocks)
        for block, cache in zip(self.blocks, caches):
            x = block(x, rope, cache)
        return self.final_norm(x), rows, rope

    def intervals(self, inputs: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """(B, T, d): for each note-on row, the embeddings of its pitch, velocity and duration minus those of
        its channel's last note-on before it in the window (0 for other rows, and where there is none)."""
        carried = kv_cache.input_notes if kv_cache is not None else None
        after = last_note_by_channel(inputs, carried)  # (B, T, 16, 3): after each row
        if kv_cache is not None:
            kv_cache.input_notes = after[:, -1]
        start = carried if carried is not None else torch.full_like(after[:, 0], -1)
        before = torch.cat([start.unsqueeze(1), after[:, :-1]], dim=1)  # before each row
        previous = note_of_channel(before, inputs[..., CHANNEL])  # (B, T, 3)
        known = (inputs[..., TYPE, None] == NOTE_ON) & (previous >= 0)
        x = 0
        for a, (column, table) in enumerate(zip(RELATIVE_COLUMNS, self.interval_embed)):
            step = inputs[..., column] - previous[..., a] + VOCAB[FIELDS[column]] - 1
            x = x + table(torch.where(known[..., a], step, 0)) * known[..., a, None]
        return x

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None,
                start_ticks: torch.Tensor | None = None, song_counts: SongCounts | None = None) -> dict[str, torch.Tensor]:
        """inputs (B, T, F) events, targets (B, T, F) the next events (IGNORE-masked; cascade heads
        are teacher-forced on them), start_ticks (B,) see hidden, song_counts: SongStart.counts (what the
        song played before the window; None: nothing) -> {field: logits (B, T, V_field)}."""
        h, rows, rope = self.run(inputs, start_ticks=start_ticks)
        if not getattr(self.heads, "remembers", False):
            return self.heads(h, targets)
        return self.heads(h, targets, self.heads.memory(inputs, rows, rope, before=song_counts))

    def next_context(self, inputs: torch.Tensor, kv_cache: KVCache | None = None, start_ticks: torch.Tensor | None = None,
                     song_counts: SongCounts | None = None) -> tuple[torch.Tensor, Memory | None]:
        """For a sampler: what field_logits needs to choose the event after inputs (as hidden's arguments):
        h of the last row (B, d), and for heads that read the window's rows their memory of every row of
        the window, the cached ones too (heads.py, played.py); None for the other heads."""
        h, rows, rope = self.run(inputs, kv_cache, start_ticks)
        if not getattr(self.heads, "remembers", False):
            return h[:, -1], None
        return h[:, -1], self.heads.memory(inputs, rows, rope, kv_cache, last=True, before=song_counts)

    def field_logits(self, h_last: torch.Tensor, field_index: int, chosen_so_far: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        """For a sampler: h_last (B, d) and memory from next_context, chosen_so_far (B, k) the values
        already sampled for fields 0..k-1 of the next event (k = field_index) -> logits (B, V) of field k."""
        return self.heads.field_logits(h_last, field_index, chosen_so_far, memory)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------------------------
# Configuration checks and optimiser groups

def _check_options(registry: Registry, node: Any, **given: Any) -> None:
    """Unknown name (the registry says which exist) or an option the component does not take."""
    name = node if isinstance(node, str) else node["name"]
    options = {} if isinstance(node, str) else {k: v for k, v in dict(node).items() if k != "name"}
    try:
        inspect.signature(registry.get(name)).bind(**options, **given)
    except TypeError as error:
        raise ConfigError(f"{registry.option}={name!r}: {error}; options given: {sorted(options) or 'none'}") from None


def validate_model_config(model_cfg: Any) -> None:
    """Raise ConfigError (one line, naming the option) for any bad value in `cfg.model`."""
    cfg = model_cfg
    for key in ("d_model", "n_layer", "n_head", "max_seq_len"):
        value = cfg.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"model.{key}={value!r} must be a positive integer")
    if cfg.d_model % cfg.n_head != 0:
        raise ConfigError(f"model.d_model={cfg.d_model} must be divisible by model.n_head={cfg.n_head}")
    if cfg.get("beat_phase") and (not isinstance(cfg.get("ticks_per_beat"), int) or cfg.ticks_per_beat <= 0):
        raise ConfigError(f"model.beat_phase=true needs model.ticks_per_beat (the codec grid), got {cfg.get('ticks_per_beat')!r}")
    if not isinstance(cfg.get("dropout"), (int, float)) or not 0 <= cfg.dropout < 1:
        raise ConfigError(f"model.dropout={cfg.get('dropout')!r} must be in [0, 1)")
    _check_options(POSITIONS, cfg.pos, d_model=1, n_head=1, max_seq_len=1)
    POSITIONS.get(cfg.pos if isinstance(cfg.pos, str) else cfg.pos.name).check_shape(cfg.d_model, cfg.n_head)
    _check_options(NORM_POSITIONS, cfg.norm_position)
    _check_options(NORMS, cfg.norm, d_model=1)
    _check_options(INITS, cfg.init, model=None)
    _check_options(HEADS, cfg.heads, d_model=1, vocab={}, n_head=1)
    _check_options(EMBEDDING_INITS, cfg.embedding_init, model=None)


def configure_optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matmul weights only; none on biases, norm gains and
    embeddings (decaying an embedding pulls rare values towards zero, which is not regularisation)."""
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        is_matmul = param.dim() >= 2 and id(param) not in embedding_weights
        (decay if is_matmul else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
