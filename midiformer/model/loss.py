"""The loss: the sum over fields of cross-entropy, masked where a field does not apply, and, with the
grammar-masked likelihood, renormalised over the values the past allows.

Targets arrive pre-masked from the dataset (midiformer.data.dataset.split_inputs_targets): a field
that does not apply to the target event's type (a note-off has no instrument), and every field of a
padding row, holds events.IGNORE.

    masks = LIKELIHOODS.build(cfg.model.likelihood)(inputs, targets, start)   # None: every value allowed
    nats, n_events = masked_field_losses(logits, targets, masks)
    loss = loss_from(nats, n_events)            # nats per event, summed over fields: train on this

`model.likelihood=grammar` (the default) gives no probability to values the event grammar rules out
(midiformer/codec/grammar.py): log p(x_k | past, x_<k) = l_k[x_k] - logsumexp(l_k[allowed]). The masks
depend only on the past and the event's earlier fields, so bits per event stay an exact code length.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from midiformer.codec import grammar
from midiformer.codec.events import FIELDS, IGNORE
from midiformer.registry import Registry

Masks = dict[str, torch.Tensor]
LIKELIHOODS = Registry("model.likelihood")


@LIKELIHOODS.register("free")
def free_likelihood() -> Callable[..., Masks | None]:
    """Every value of every field is possible: the model has to learn the grammar."""
    return lambda inputs, targets, start: None


@LIKELIHOODS.register("grammar")
def grammar_likelihood() -> Callable[..., Masks | None]:
    """Values that cannot follow the past get no probability, in training and in evaluation."""
    return grammar.field_masks


def masked_field_losses(logits: dict[str, torch.Tensor], targets: torch.Tensor,
                        masks: Masks | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """logits {field: (B, T, V)}, targets (B, T, F), masks {field: (B, T, V) bool} or None
    -> ({field: summed nats}, number of target events).

    Sums (not means) so that batches and validation shards add up exactly; an event counts when its
    type is not IGNORE (padding rows are IGNORE in every field). A target that its mask excludes (never,
    for rows the codec writes: tests check it) is let through rather than costing infinite bits."""
    nats = {name: target_nats.sum() for name, target_nats in masked_target_nats(logits, targets, masks).items()}
    n_events = (targets[..., 0] != IGNORE).sum()
    return nats, n_events


def masked_target_nats(logits: dict[str, torch.Tensor], targets: torch.Tensor,
                       masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """As masked_field_losses, target by target: {field: nats (B, T)}, 0 where the target is IGNORE."""
    nats = {}
    for k, name in enumerate(FIELDS):
        field_logits, target = logits[name].float(), targets[..., k]
        if masks is not None:
            allowed = masks[name].scatter(-1, target.clamp(min=0).unsqueeze(-1), True)
            field_logits = field_logits.masked_fill(~allowed, float("-inf"))
        nats[name] = F.cross_entropy(field_logits.flatten(0, -2), target.flatten(), ignore_index=IGNORE,
                                     reduction="none").view(target.shape)
    return nats


def grammar_violations(masks: Masks, targets: torch.Tensor) -> dict[str, int]:
    """Per field, how many counted targets their mask excludes (0 for every song the codec writes)."""
    counts = {}
    for k, name in enumerate(FIELDS):
        target = targets[..., k]
        allowed = masks[name].gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        counts[name] = int(((target != IGNORE) & ~allowed).sum())
    return counts


def loss_from(nats: dict[str, torch.Tensor], n_events: torch.Tensor) -> torch.Tensor:
    """Nats per event, summed over fields (the training loss); clamp: an all-padding batch gives 0, not NaN."""
    return sum(nats.values()) / n_events.clamp(min=1)
