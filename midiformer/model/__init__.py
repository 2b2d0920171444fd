"""The model: MidiGPT and its swappable parts (norms, inits, heads), each registry beside its classes."""
from midiformer.model.gpt import (
    MidiGPT,
    configure_optimizer_groups,
    validate_model_config,
)
from midiformer.model.heads import HEADS
from midiformer.model.init import EMBEDDING_INITS, INITS
from midiformer.model.loss import LIKELIHOODS, loss_from, masked_field_losses
from midiformer.model.norms import NORMS

__all__ = [
    "MidiGPT", "validate_model_config", "configure_optimizer_groups",
    "NORMS", "INITS", "EMBEDDING_INITS", "HEADS",
    "masked_field_losses", "loss_from", "LIKELIHOODS",
]
