"""The masked loss: fields that do not apply and padding rows do not count."""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from midiformer.codec import events
from midiformer.common import LN2
from midiformer.model import loss_from, masked_field_losses
from tests.model.conftest import mask_targets, split, windows


def random_logits(batch: int, length: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {name: torch.randn(batch, length, size) for name, size in events.VOCAB.items()}


def test_values_of_fields_that_do_not_apply_change_nothing(songs):
    batch = windows(songs, batch=2, length=64)
    logits = random_logits(2, 64)
    _, targets = split(batch)
    scrambled = batch.clone()
    not_applicable = ~torch.from_numpy(events.APPLIES)[batch[..., 0]]
    scrambled[not_applicable] = 3  # any value: a note-off's instrument, a tempo row's channel, ...
    assert not_applicable[:, 1:].any()
    nats, n = masked_field_losses(logits, mask_targets(scrambled[:, 1:]))
    reference, n_reference = masked_field_losses(logits, targets)
    assert n == n_reference == 2 * 64
    for name in events.FIELDS:
        torch.testing.assert_close(nats[name], reference[name])


def test_masked_loss_is_the_sum_over_applicable_fields(songs):
    _, targets = split(windows(songs, batch=2, length=32))
    logits = random_logits(2, 32)
    nats, n = masked_field_losses(logits, targets)
    expected = 0.0
    for b, t in itertools.product(range(2), range(32)):
        for k, name in enumerate(events.FIELDS):
            if events.APPLIES[targets[b, t, 0], k]:
                expected += F.cross_entropy(logits[name][b, t], targets[b, t, k]).item()
    assert math.isclose(sum(v.item() for v in nats.values()), expected, rel_tol=1e-5)
    assert math.isclose(loss_from(nats, n).item(), expected / 64, rel_tol=1e-5)
    assert math.isclose(loss_from(nats, n).item() / LN2, expected / 64 / math.log(2), rel_tol=1e-5)


def test_padding_rows_are_not_events(songs):
    _, targets = split(windows(songs, batch=1, length=16))
    logits = random_logits(1, 16)
    padded = targets.clone()
    padded[:, 10:] = events.IGNORE
    nats, n = masked_field_losses(logits, padded)
    short, n_short = masked_field_losses({k: v[:, :10] for k, v in logits.items()}, targets[:, :10])
    assert n == n_short == 10
    for name in events.FIELDS:
        torch.testing.assert_close(nats[name], short[name])


def test_an_all_padding_batch_gives_zero_not_nan():
    targets = torch.full((1, 4, len(events.FIELDS)), events.IGNORE)
    assert loss_from(*masked_field_losses(random_logits(1, 4), targets)).item() == 0.0



def test_grammar_masked_nats_are_the_renormalised_cross_entropy(songs):
    """With masks, each field's cost is -log(exp l[x] / sum over the allowed values of exp l[v]), computed
    here value by value; a field whose mask allows one value costs nothing."""
    _, targets = split(windows(songs, batch=2, length=24))
    masks = {name: torch.rand(2, 24, size) < 0.3 for name, size in events.VOCAB.items()}  # any masks will do
    for k, name in enumerate(events.FIELDS):  # ... that allow the target, as the grammar's always do
        target = targets[..., k].clamp(min=0)
        masks[name].scatter_(-1, target.unsqueeze(-1), True)
    masks["instrument"][:] = False
    masks["instrument"].scatter_(-1, targets[..., 3].clamp(min=0).unsqueeze(-1), True)
    logits = random_logits(2, 24)
    nats, n = masked_field_losses(logits, targets, masks)
    for k, name in enumerate(events.FIELDS):
        expected = 0.0
        for b, t in itertools.product(range(2), range(24)):
            value = int(targets[b, t, k])
            if value == events.IGNORE:
                continue
            allowed = masks[name][b, t].nonzero().flatten()
            expected += -(logits[name][b, t, value] - torch.logsumexp(logits[name][b, t, allowed], 0)).item()
        assert math.isclose(nats[name].item(), expected, rel_tol=1e-5, abs_tol=1e-6), name
    assert nats["instrument"].item() == 0.0
    free, _ = masked_field_losses(logits, targets)
    assert all(nats[name] <= free[name] + 1e-6 for name in events.FIELDS)
