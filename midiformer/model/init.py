"""Weight initialisations, one registered function each, chosen by `model/init` (conf/model/init/*.yaml).

An init is called as `INITS.build(cfg.model.init, model=model)` on a freshly built MidiGPT. It may use
`model.blocks` (each with `attn.q/k/v/proj` and `mlp.fc/proj`) and `model.d_model`; every nn.Embedding
of the model (field tables, learned positions, cascade-head tables) counts as an embedding.

`model.embedding_init` then re-draws the embeddings on its own (EMBEDDING_INITS), so that the seed's
claim "nn.Embedding's N(0, 1) beats a scaled init by 2%" can be tested with any init.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from midiformer.registry import Registry

INITS = Registry("model.init")
EMBEDDING_INITS = Registry("model.embedding_init")


def embeddings(model: nn.Module) -> list[nn.Embedding]:
    return [m for m in model.modules() if isinstance(m, nn.Embedding)]


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@INITS.register("pytorch")
@torch.no_grad()
def pytorch_default(model: nn.Module) -> None:
    """PyTorch's own defaults, kept as built: Linear Kaiming-uniform, nn.Embedding N(0, 1)."""


@INITS.register("gpt2")
@torch.no_grad()
def gpt2(model: nn.Module, std: float = 0.02) -> None:
    """Radford et al. 2019: N(0, std) weights, zero biases, and "weight scaling": the residual output
    projections (attention and MLP) drawn with std / sqrt(2 * n_layer), two per block."""
    for layer in linears(model):
        nn.init.normal_(layer.weight, 0.0, std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    for table in embeddings(model):
        nn.init.normal_(table.weight, 0.0, std)
    residual_std = std / math.sqrt(2 * len(model.blocks))
    for block in model.blocks:
        nn.init.normal_(block.attn.proj.weight, 0.0, residual_std)
        nn.init.normal_(block.mlp.proj.weight, 0.0, residual_std)


@INITS.register("tfixup")
@torch.no_grad()
def tfixup(model: nn.Module) -> None:
    """Huang et al. 2020 (T-Fixup), decoder rule: Xavier-uniform weights, embeddings N(0, d^-1/2);
    then value, attention-output and MLP weights and the embeddings scaled by (9N)^-1/4, N = n_layer.
    Meant for no normalisation and no learning-rate warm-up (conf/model/init/tfixup.yaml sets both)."""
    for layer in linears(model):
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    scale = (9 * len(model.blocks)) ** -0.25
    for table in embeddings(model):
        nn.init.normal_(table.weight, 0.0, model.d_model ** -0.5)
        table.weight.mul_(scale)
    for block in model.blocks:
        for layer in (block.attn.v, block.attn.proj, block.mlp.fc, block.mlp.proj):
            layer.weight.mul_(scale)


@EMBEDDING_INITS.register("default")
def follow_init(model: nn.Module) -> None:
    """Keep what the chosen `model/init` drew."""


@EMBEDDING_INITS.register("pytorch")
@torch.no_grad()
def unit_normal(model: nn.Module) -> None:
    """nn.Embedding's default, N(0, 1): the seed's choice."""
    for table in embeddings(model):
        nn.init.normal_(table.weight, 0.0, 1.0)


@EMBEDDING_INITS.register("scaled")
@torch.no_grad()
def scaled_normal(model: nn.Module) -> None:
    """N(0, 0.02), GPT-2's embedding init: what the seed compared against."""
    for table in embeddings(model):
        nn.init.normal_(table.weight, 0.0, 0.02)
