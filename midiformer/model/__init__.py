"""The model: MidiGPT and its swappable parts (positions, norms and their position, inits, heads), each
registry beside its classes."""
from midiformer.model.gpt import (
    MidiGPT,
    configure_optimizer_groups,
    validate_model_config,
)
from midiformer.model.heads import HEADS
from midiformer.model.init import EMBEDDING_INITS, INITS
from midiformer.model.loss import LIKELIHOODS, loss_from, masked_field_losses
from midiformer.model.norms import NORM_POSITIONS, NORMS
from midiformer.model.positions import POSITIONS

__all__ = [
    "MidiGPT", "validate_model_config", "configure_optimizer_groups",
    "NORMS", "NORM_POSITIONS", "POSITIONS", "INITS", "EMBEDDING_INITS", "HEADS",
    "masked_field_losses", "loss_from", "LIKELIHOODS",
]
