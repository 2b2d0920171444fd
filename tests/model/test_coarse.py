"""Coarse-and-fine tables (model/coarse.py): neighbouring values share their bin's parameters."""
from __future__ import annotations

import torch

from midiformer.model import MidiGPT, coarse
from tests.model.conftest import split, tiny_config, windows


def test_a_bin_shares_its_logit_and_its_embedding():
    torch.manual_seed(0)
    head, table = coarse.linear(8, 10, 4), coarse.embedding(10, 8, 4)
    h = torch.randn(3, 8)
    with torch.no_grad():
        head.fine.weight.zero_(), head.fine.bias.zero_()
        table.fine.weight.zero_()
    logits = head(h)
    assert torch.equal(logits[:, 0], logits[:, 3]) and torch.equal(logits[:, 8], logits[:, 9])
    assert not torch.equal(logits[:, 3], logits[:, 4])  # 3 and 4 fall in different bins
    values = torch.tensor([0, 3, 4])
    assert torch.equal(table(values)[0], table(values)[1]) and not torch.equal(table(values)[1], table(values)[2])


def test_no_factor_is_a_plain_table():
    assert isinstance(coarse.linear(8, 10, None), torch.nn.Linear)
    assert isinstance(coarse.embedding(10, 8, 1), torch.nn.Embedding)


def test_a_model_with_coarse_bins_gives_logits_for_every_value(songs):
    for heads in ("parallel", "cascade", "cascade_relative"):
        model = MidiGPT(tiny_config(heads=heads, coarse_bins={"time": 12, "velocity": 4}))
        inputs, targets = split(windows(songs, batch=2, length=16))
        logits = model(inputs, targets)
        assert logits["time"].shape[-1] == 385 and logits["velocity"].shape[-1] == 128
        assert any(isinstance(m, coarse.CoarseLinear) for m in model.modules())
