"""Ordinal values (model/ordinal.py) and the one place that picks a field's tables (model/values.py)."""
from __future__ import annotations

import pytest
import torch

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.model import MidiGPT, ordinal
from midiformer.model.values import ValueTables
from tests.model.conftest import split, tiny_config, windows


@pytest.mark.parametrize("log_scale", [-1.2, 0.0, 3.0, 6.0])  # from a point (0.3 values) to wider than the range
def test_the_discretised_mixture_is_a_distribution_over_every_value(log_scale):
    torch.manual_seed(0)
    weights, means = torch.randn(6, 3), torch.rand(6, 3) * 140 - 6  # some means outside 0..127
    log_p = ordinal.discretised_logistic_log_probs(weights, means, torch.full((6, 3), log_scale), 128)
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(6), atol=1e-4, rtol=0)


def test_a_narrow_component_puts_its_mass_on_its_neighbourhood():
    log_p = ordinal.discretised_logistic_log_probs(torch.zeros(1, 1), torch.tensor([[40.0]]),
                                                   torch.tensor([[0.0]]), 128)[0].exp()
    assert log_p.argmax() == 40 and float(log_p[39]) == pytest.approx(float(log_p[41]), rel=1e-5)
    assert log_p[36:45].sum() > 0.95 and log_p[38] < log_p[39] < log_p[40]  # falls off on both sides


def test_the_embedding_of_a_value_sees_it_as_a_number():
    table = ordinal.OrdinalEmbedding(128, 16)
    with torch.no_grad():
        table.table.weight.zero_()  # only the numeric part is left
    values = torch.tensor([10, 11, 100])
    embedded = table(values)
    near, far = (embedded[0] - embedded[1]).norm(), (embedded[0] - embedded[2]).norm()
    assert 0 < near < far  # neighbours are close, distant values are not


@pytest.mark.parametrize("heads", ["parallel", "cascade", "cascade_relative"])
def test_a_model_with_ordinal_fields_gives_finite_logits_for_every_value(songs, heads):
    torch.manual_seed(0)
    model = MidiGPT(tiny_config(heads=heads, ordinal={"time": 3, "velocity": 2}))
    inputs, targets = split(windows(songs, batch=2, length=16))
    logits = model(inputs, targets)
    for name in events.FIELDS:
        assert logits[name].shape[-1] == events.VOCAB[name] and torch.isfinite(logits[name]).all()
    assert sum(isinstance(m, ordinal.OrdinalLinear) for m in model.modules()) == 2
    loss = sum(torch.nn.functional.cross_entropy(logits[n].flatten(0, 1), targets[..., k].flatten(), ignore_index=-100)
               for k, n in enumerate(events.FIELDS))
    loss.backward()  # the mixture's parameters learn
    mixture = next(m for m in model.modules() if isinstance(m, ordinal.OrdinalLinear)).mixture
    assert mixture.weight.grad.abs().sum() > 0


def test_value_tables_refuse_unknown_fields_and_a_field_named_twice():
    with pytest.raises(ConfigError, match="model.ordinal: unknown field.*tempo"):
        ValueTables(None, {"tempo": 4}, events.VOCAB)
    with pytest.raises(ConfigError, match="both name velocity"):
        ValueTables({"velocity": 4}, {"velocity": 4}, events.VOCAB)
