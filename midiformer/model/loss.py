"""The loss: the sum over fields of cross-entropy, masked where a field does not apply.

Targets arrive pre-masked from the dataset (midiformer.data.dataset.split_inputs_targets): a field
that does not apply to the target event's type (a note-off has no instrument), and every field of a
padding row, holds events.IGNORE. Nothing here looks at event types.

    nats, n_events = masked_field_losses(logits, targets)
    loss = loss_from(nats, n_events)            # nats per event, summed over fields: train on this
    bits_per_event = loss / math.log(2)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from midiformer.codec.events import FIELDS, IGNORE


def masked_field_losses(
    logits: dict[str, torch.Tensor], targets: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """logits {field: (B, T, V)}, targets (B, T, F) -> ({field: summed nats}, number of target events).

    Sums (not means) so that batches and validation shards add up exactly; an event counts when its
    type is not IGNORE (padding rows are IGNORE in every field)."""
    nats = {
        name: F.cross_entropy(logits[name].flatten(0, -2).float(), targets[..., k].flatten(), ignore_index=IGNORE, reduction="sum")
        for k, name in enumerate(FIELDS)
    }
    n_events = (targets[..., 0] != IGNORE).sum()
    return nats, n_events


def loss_from(nats: dict[str, torch.Tensor], n_events: torch.Tensor) -> torch.Tensor:
    """Nats per event, summed over fields (the training loss); clamp: an all-padding batch gives 0, not NaN."""
    return sum(nats.values()) / n_events.clamp(min=1)


def bits(nats_per_event: torch.Tensor | float) -> torch.Tensor | float:
    """Nats to bits: divide by ln 2."""
    return nats_per_event / math.log(2)
