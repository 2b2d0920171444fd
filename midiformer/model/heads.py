"""Output heads: from the last hidden state to one set of logits per field of the NEXT event.

Chosen by `model.heads` and built as `HEADS.build(cfg.model.heads, d_model=d, vocab=events.VOCAB)`.

Both heads have the same two entry points:
    forward(h, targets)                      training: h (B, T, d), targets (B, T, F) -> {field: (B, T, V)}
    field_logits(h, field_index, chosen)     generation: h (..., d), chosen (..., k) = the values already
                                             picked for fields 0..k-1 of the event (k = field_index),
                                             -> logits (..., V) of field k
A sampler calls field_logits for k = 0, 1, ... in events.FIELDS order, appending each sampled value
to `chosen`; the parallel head ignores `chosen`.
"""
from __future__ import annotations

import torch
from torch import nn

from midiformer.model.values import ValueTables
from midiformer.registry import Registry

HEADS = Registry("model.heads")


@HEADS.register("parallel")
class ParallelHeads(nn.Module):
    """Every field from the hidden state alone: the fields of one event are independent given h."""

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None):
        super().__init__()
        self.fields, tables = tuple(vocab), tables or ValueTables()
        self.out = nn.ModuleList(tables.linear(name, d_model, size) for name, size in vocab.items())

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None) -> torch.Tensor:
        return self.out[field_index](h)

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {name: self.field_logits(h, k) for k, name in enumerate(self.fields)}


@HEADS.register("cascade")
class CascadeHeads(nn.Module):
    """Fields in events.FIELDS order; field k sees h plus the embeddings of the event's fields 0..k-1:

        z_k = h + sum_{j<k} E_j[y_j],   logits_k = W_k gelu(U_k z_k)   (k >= 1; field 0 is W_0 h)

    y_j is the target in training (teacher forcing) and the sampled value in generation. The hidden
    layer U_k lets a chosen field interact with the context (a note-off's pitch must be one sounding
    on the chosen channel), which a linear head on z_k cannot express.
    """

    def __init__(self, d_model: int, vocab: dict[str, int], tables: ValueTables | None = None):
        super().__init__()
        self.fields, tables = tuple(vocab), tables or ValueTables()
        sizes = list(vocab.values())
        self.embed = nn.ModuleList(tables.embedding(name, size, d_model)  # the last is never fed back
                                   for name, size in list(vocab.items())[:-1])
        self.mix = nn.ModuleList([nn.Identity()] + [nn.Sequential(nn.Linear(d_model, d_model), nn.GELU()) for _ in sizes[1:]])
        self.out = nn.ModuleList(tables.linear(name, d_model, size) for name, size in vocab.items())

    def field_logits(self, h: torch.Tensor, field_index: int, chosen: torch.Tensor | None = None) -> torch.Tensor:
        z = h
        for j in range(field_index):
            z = z + self.embed[j](chosen[..., j])
        return self.out[field_index](self.mix[field_index](z))

    def forward(self, h: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if targets is None:
            raise ValueError("cascade heads are teacher-forced: forward(inputs, targets) needs targets")
        chosen = targets.clamp(min=0)  # IGNORE (< 0: a field that does not apply, or padding) embeds as 0
        return {name: self.field_logits(h, k, chosen) for k, name in enumerate(self.fields)}
