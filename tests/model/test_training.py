"""Every norm x init x norm position x position x head combination trains a few AdamW steps, finitely."""
from __future__ import annotations

import itertools

import pytest
import torch

from midiformer.model import (
    INITS,
    NORMS,
    MidiGPT,
    configure_optimizer_groups,
    loss_from,
    masked_field_losses,
)
from tests.model.conftest import split, tiny_config, windows

COMBINATIONS = list(itertools.product(NORMS.names(), INITS.names(), ["pre", "post"], ["learned", "rope"], ["parallel", "cascade"]))


@pytest.mark.parametrize("norm, init, norm_position, pos, heads", COMBINATIONS)
def test_few_adamw_steps_give_a_finite_falling_loss(songs, norm, init, norm_position, pos, heads):
    torch.manual_seed(0)
    model = MidiGPT(tiny_config(norm, init, norm_position=norm_position, pos=pos, heads=heads))
    optimizer = torch.optim.AdamW(configure_optimizer_groups(model, weight_decay=0.1), lr=1e-3)
    inputs, targets = split(windows(songs, batch=2, length=32))
    losses = []
    for _ in range(4):
        loss = loss_from(*masked_field_losses(model(inputs, targets), targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]  # the same batch four times: it must be learning


def test_optimizer_groups_decay_matmul_weights_only():
    model = MidiGPT(tiny_config("scalenorm", heads="cascade"))
    decay, no_decay = configure_optimizer_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed and all(n.endswith("weight") and "embed" not in n and "norm" not in n for n in decayed)
    assert "blocks.0.attn.q.weight" in decayed and "heads.out.0.weight" in decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert {"embed.0.weight", "pos_embed.weight", "heads.embed.0.weight", "blocks.0.norm1.g", "blocks.0.attn.q.bias"} <= not_decayed
