"""The norm formulas, and where FixNorm applies."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from midiformer.codec import events
from midiformer.model import NORMS, MidiGPT
from midiformer.model.norms import ScaleNorm
from tests.model.conftest import split, tiny_config, windows

D = 16


def test_scalenorm_is_g_times_unit_vector_with_g_starting_at_sqrt_d():
    norm = NORMS.build({"name": "scalenorm", "eps": 1e-5}, d_model=D)
    x = torch.randn(3, 5, D)
    assert norm.g.shape == () and norm.g.item() == pytest.approx(math.sqrt(D))
    torch.testing.assert_close(norm(x), math.sqrt(D) * x / x.norm(dim=-1, keepdim=True))
    with torch.no_grad():
        norm.g.fill_(2.0)
    torch.testing.assert_close(norm(x).norm(dim=-1), torch.full((3, 5), 2.0))
    assert torch.isfinite(norm(torch.zeros(1, D))).all()  # ||0|| is clamped to eps


def test_fixnorm_gives_unit_length_embeddings_times_a_learned_scale_and_scalenorm_in_blocks():
    model = MidiGPT(tiny_config("fixnorm", pos="rope"))  # rope: nothing is added after the embedding norm
    assert isinstance(model.embed_norm, ScaleNorm) and isinstance(model.blocks[0].norm1, ScaleNorm)
    assert model.embed_norm.g is not model.blocks[0].norm1.g
    with torch.no_grad():
        model.embed_norm.g.fill_(3.0)
    inputs = torch.zeros(1, 4, len(events.FIELDS), dtype=torch.long)
    summed = sum(table(inputs[..., k]) for k, table in enumerate(model.embed))
    torch.testing.assert_close(model.embed_norm(summed).norm(dim=-1), torch.full((1, 4), 3.0))


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "scalenorm", "none"])
def test_only_fixnorm_normalises_the_embedding(norm):
    assert isinstance(MidiGPT(tiny_config(norm)).embed_norm, nn.Identity)


def test_layernorm_and_rmsnorm_formulas():
    x = torch.randn(4, D) * 3 + 1
    layer = NORMS.build({"name": "layernorm", "eps": 1e-5}, d_model=D)
    expected = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(layer(x), expected)
    rms = NORMS.build({"name": "rmsnorm", "eps": 1e-6}, d_model=D)
    torch.testing.assert_close(rms(x), x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6))
    assert NORMS.build({"name": "layernorm", "bias": False}, d_model=D).bias is None


def test_none_is_the_identity_and_has_no_parameters(songs):
    model = MidiGPT(tiny_config("none"))
    assert not [n for n, _ in model.named_parameters() if "norm" in n]
    inputs, targets = split(windows(songs, batch=1, length=8))
    assert torch.isfinite(model(inputs, targets)["type"]).all()
