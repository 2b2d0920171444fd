"""The plain GPT the benchmarks compare against: nanoGPT over one token per position, MidiGPT's blocks.

bench-train times it against MidiGPT; bench-quality trains it on MidiTok tokens. Only the embedding
(one table instead of one per field) and the head (one softmax instead of one per field) differ from
MidiGPT, so a difference in speed or quality comes from the representation, not from the blocks.
"""
from __future__ import annotations

import torch
from torch import nn

from midiformer.model.gpt import Block
from midiformer.model.norms import NORM_POSITIONS


class PlainGPT(nn.Module):
    """nanoGPT: one token per position, one embedding table, learned positions, one head; MidiGPT's blocks."""

    def __init__(self, vocab_size: int, d_model: int, n_layer: int, n_head: int, max_seq_len: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_seq_len, d_model)
        self.drop = nn.Dropout(dropout)
        make_norm = lambda: nn.LayerNorm(d_model)  # noqa: E731
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout, make_norm, NORM_POSITIONS.build("pre")) for _ in range(n_layer))
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab) of the next token at every position."""
        x = self.drop(self.embed(tokens) + self.pos_embed.weight[: tokens.shape[1]])
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))
