"""Output heads: from the last hidden state to one set of logits per field of the NEXT event.

Chosen by `model.heads` and built as `HEADS.build(cfg.model.heads, d_model=d, vocab=events.VOCAB, tables=...,
n_head=h)`.

Every head has the same two entry points:
    forward(h, targets, memory)              training: h (B, T, d), targets (B, T, F) -> {field: (B, T, V)}
    field_logits(h, field_index, chosen, memory)
                                             generation: h (..., d), chosen (..., k) = the values already
                                             picked for fields 0..k-1 of the event (k = field_index),
                                             -> logits (..., V) of field k
A sampler calls field_logits for k = 0, 1, ... in events.FIELDS order, appending each sampled value
to `chosen`; the parallel head ignores `chosen`. `memory` is for heads that read the window's rows
(`remembers = True`: cascade_lookup here, cascade_relative and cascade_cache in played.py); MidiGPT gives
it to them and None to the others:

    memory(inputs, rows, rope, kv_cache=None, last=False, before=None)
                                             inputs (B, T, F) the rows, rows (B, T, d) their embeddings,
                                             rope the blocks' rotation; kv_cache: inputs follow its rows
                                             (a head keeps what it needs there); last: for the last row only;
                                             before: SongStart.counts, the song's values before the window
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from midiformer.model.positions import Rope, apply_rope
from midiformer.model.values import ValueTables
from midiformer.registry import Registry

HEADS = Registry("model.heads")
# what a remembering head reads of the window: cascade_lookup the rows' keys, values and the query rotation;
# cascade_relative each channel's last note and the last inter-onset interval (played.py), cascade_cache those
# and the PlayedCounts
Memory = "tuple[torch.Tensor, torch.Tensor, Rope | None] | tuple"
SongCounts = "tuple[torch.Tensor, torch.Tensor]"  # grammar.SongStart.counts: what the song played before the window


@HEADS.register("parallel")
class ParallelHeads(nn.Module):
    """Every field from the hidden state alone: the fields of one event are independent given h."""

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1):
        super().__init__()  # n_head: the model's attention heads, for the heads that attend (cascade_lookup)
        self.fields, tables = tuple(vocab), tables or ValueTables()
        self.out = nn.ModuleList(tables.linear(name, d_model, size) for name, size in vocab.items())

    remembers = False  # needs no memory of the window's rows (see CascadeLookupHeads)

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        return self.out[field_index](h)

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None,
                memory: Memory | None = None) -> dict[str, torch.Tensor]:
        return {name: self.field_logits(h, k) for k, name in enumerate(self.fields)}


@HEADS.register("cascade")
class CascadeHeads(nn.Module):
    """Fields in events.FIELDS order; field k sees h plus the embeddings of the event's fields 0..k-1:

        z_k = h + sum_{j<k} E_j[y_j],   logits_k = W_k gelu(U_k z_k)   (k >= 1; field 0 is W_0 h)

    y_j is the target in training (teacher forcing) and the sampled value in generation. The hidden
    layer U_k lets a chosen field interact with the context (a note-off's pitch must be one sounding
    on the chosen channel), which a linear head on z_k cannot express.
    """

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1):
        super().__init__()  # n_head: the model's attention heads, for the heads that attend (cascade_lookup)
        self.fields, tables = tuple(vocab), tables or ValueTables()
        sizes = list(vocab.values())
        self.embed = nn.ModuleList(tables.embedding(name, size, d_model)  # the last is never fed back
                                   for name, size in list(vocab.items())[:-1])
        self.mix = nn.ModuleList([nn.Identity()] + [nn.Sequential(nn.Linear(d_model, d_model), nn.GELU()) for _ in sizes[1:]])
        self.out = nn.ModuleList(tables.linear(name, d_model, size) for name, size in vocab.items())

    remembers = False

    def with_chosen(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None) -> torch.Tensor:
        """z_k = h + sum_{j<k} E_j[y_j]: the hidden state with the fields already chosen for the event."""
        z = h
        for j in range(field_index):
            z = z + self.embed[j](chosen[..., j])
        return z

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        return self.out[field_index](self.mix[field_index](self.with_chosen(h, field_index, chosen)))

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None,
                memory: Memory | None = None) -> dict[str, torch.Tensor]:
        if targets is None:
            raise ValueError(f"{type(self).__name__} are teacher-forced: forward(inputs, targets) needs targets")
        if self.remembers and memory is None:
            raise ValueError(f"{type(self).__name__} read the window's rows: call them through MidiGPT, "
                             "which gives them the rows' memory")
        chosen = targets.clamp(min=0)  # IGNORE (< 0: a field that does not apply, or padding) embeds as 0
        return {name: self.field_logits(h, k, chosen, memory) for k, name in enumerate(self.fields)}


@HEADS.register("cascade_lookup")
class CascadeLookupHeads(CascadeHeads):
    """Cascade heads that look back once the first fields are chosen: field k >= 1 attends to the rows of
    the window as they entered the model (x_s, the summed field embeddings of row s), with a query that
    knows the fields already chosen for the next event:

        z_k = h_t + sum_{j<k} E_j[y_j],   z_k += W_o Attn(q = R_t W_q z_k;  keys R_s W_k x_s, values W_v x_s;  s <= t)

    R is the rotation of model/pos (rope, rope_time; none for learned positions, so the look-up then
    cannot tell a recent row from an old one). A chosen channel finds its own rows this way (the
    velocity it played last, its pitches), which h_t, computed before the channel was chosen, would
    otherwise have to hold for every channel at once. One attention is shared by the fields.

    The look-up needs the window's rows besides h: `memory(rows, rope)` gives their keys and values,
    passed to forward (training) and to field_logits (generation: those of every row up to the last,
    and the rotation of the last; MidiGPT.next_context builds them, with the KV cache or without).
    """

    remembers = True

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None, n_head: int = 1):
        super().__init__(d_model, vocab, tables)
        self.n_head = n_head  # the blocks' heads: the rotation of model/pos is shaped for their head size
        self.q, self.k, self.v, self.proj = (nn.Linear(d_model, d_model) for _ in range(4))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)

    def memory(self, inputs: torch.Tensor, rows: torch.Tensor, rope: Rope | None, kv_cache=None,
               last: bool = False, before: SongCounts | None = None) -> Memory:
        """rows (B, T, d) input embeddings -> keys, values (B, H, T', D) of the look-up (T' = T, or every row
        so far with a cache) and the rotation of the queries (of the last row only with last=True)."""
        keys = self.split_heads(self.k(rows))
        keys, values = (apply_rope(keys, *rope) if rope is not None else keys), self.split_heads(self.v(rows))
        if kv_cache is not None:
            keys, values = kv_cache.head.append(keys, values)
        if last and rope is not None:
            rope = tuple(part[..., -1:, :] for part in rope)
        return keys, values, rope

    def look(self, z: torch.Tensor, memory: Memory) -> torch.Tensor:
        """z (B, T, d): the last T rows' queries, each seeing the keys up to its own row."""
        keys, values, rope = memory
        q = self.split_heads(self.q(z))
        if rope is not None:
            q = apply_rope(q, *rope)
        y = F.scaled_dot_product_attention(q, keys, values, is_causal=z.shape[1] > 1)
        return z + self.proj(y.transpose(1, 2).reshape(z.shape))

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None,
                     memory: Memory | None = None) -> torch.Tensor:
        if field_index == 0:
            return self.out[0](h)
        z = self.with_chosen(h, field_index, chosen)
        one_row = z.dim() == 2  # generation: h (B, d) of the last row
        z = self.look(z.unsqueeze(1) if one_row else z, memory)
        return self.out[field_index](self.mix[field_index](z[:, 0] if one_row else z))
