"""Initialisations: GPT-2's stds and weight scaling, T-Fixup's scaling, the separate embedding init."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from midiformer.model import MidiGPT
from tests.model.conftest import tiny_config

WIDE = dict(d_model=128, n_head=4, n_layer=3)  # enough weights for a std to be measured to ~1%


def build(init: str, **overrides) -> MidiGPT:
    torch.manual_seed(0)
    return MidiGPT(tiny_config("layernorm", init, **{**WIDE, **overrides}))


def std(p: torch.Tensor) -> float:
    return p.detach().float().std().item()


def test_gpt2_draws_n_0_002_and_scales_residual_projections():
    model = build("gpt2")
    expected_residual = 0.02 / math.sqrt(2 * 3)
    for block in model.blocks:
        assert std(block.attn.q.weight) == pytest.approx(0.02, rel=0.03)
        assert std(block.mlp.fc.weight) == pytest.approx(0.02, rel=0.03)
        assert std(block.attn.proj.weight) == pytest.approx(expected_residual, rel=0.03)
        assert std(block.mlp.proj.weight) == pytest.approx(expected_residual, rel=0.03)
        assert block.attn.q.bias.abs().max() == 0
    assert std(model.embed[1].weight) == pytest.approx(0.02, rel=0.05)  # time: 385 x 128


def test_tfixup_scales_value_output_mlp_and_embeddings_by_9n_to_the_minus_quarter():
    model = build("tfixup")
    d, scale = 128, (9 * 3) ** -0.25
    xavier = math.sqrt(2 / (d + d))  # std of Xavier-uniform for a d x d matrix
    xavier_mlp = math.sqrt(2 / (d + 4 * d))
    for block in model.blocks:
        assert std(block.attn.q.weight) == pytest.approx(xavier, rel=0.03)  # queries, keys: not scaled
        assert std(block.attn.k.weight) == pytest.approx(xavier, rel=0.03)
        assert std(block.attn.v.weight) == pytest.approx(xavier * scale, rel=0.03)
        assert std(block.attn.proj.weight) == pytest.approx(xavier * scale, rel=0.03)
        assert std(block.mlp.fc.weight) == pytest.approx(xavier_mlp * scale, rel=0.03)
        assert std(block.mlp.proj.weight) == pytest.approx(xavier_mlp * scale, rel=0.03)
    assert std(model.embed[1].weight) == pytest.approx(d ** -0.5 * scale, rel=0.05)


def test_pytorch_keeps_n_0_1_embeddings():
    assert std(build("pytorch").embed[1].weight) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("init", ["pytorch", "gpt2", "tfixup"])
@pytest.mark.parametrize("embedding_init, expected", [("pytorch", 1.0), ("scaled", 0.02)])
def test_embedding_init_overrides_any_init(init, embedding_init, expected):
    model = build(init, embedding_init=embedding_init)
    for table in (m for m in model.modules() if isinstance(m, nn.Embedding)):
        if table.weight.numel() > 10_000:
            assert std(table.weight) == pytest.approx(expected, rel=0.05)


def test_embedding_init_default_follows_the_init():
    assert std(build("gpt2", embedding_init="default").embed[1].weight) == pytest.approx(0.02, rel=0.05)
