"""How a field's values become input embeddings and output logits: a plain table (the default), coarse
bins shared by neighbouring values (`model.coarse_bins`, coarse.py), or values seen as numbers
(`model.ordinal`, ordinal.py). The model's input rows and the heads ask this one place per field."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from midiformer.common import ConfigError
from midiformer.model import coarse, ordinal


class ValueTables:
    def __init__(self, coarse_bins: Mapping[str, int] | None = None, ordinal_components: Mapping[str, int] | None = None,
                 vocab: Mapping[str, int] | None = None):
        self.bins, self.components = dict(coarse_bins or {}), dict(ordinal_components or {})
        for option, chosen in (("model.coarse_bins", self.bins), ("model.ordinal", self.components)):
            unknown = sorted(set(chosen) - set(vocab or chosen))
            if unknown:
                raise ConfigError(f"{option}: unknown field(s) {', '.join(unknown)}; choose from {', '.join(vocab)}")
        both = sorted(set(self.bins) & set(self.components))
        if both:
            raise ConfigError(f"model.coarse_bins and model.ordinal both name {', '.join(both)}: choose one per field")

    @classmethod
    def from_config(cls, model_cfg: Any, vocab: Mapping[str, int]) -> "ValueTables":
        return cls(model_cfg.get("coarse_bins"), model_cfg.get("ordinal"), vocab)

    def embedding(self, name: str, size: int, d_model: int) -> nn.Module:
        if name in self.components:
            return ordinal.OrdinalEmbedding(size, d_model)
        return coarse.embedding(size, d_model, self.bins.get(name))

    def linear(self, name: str, d_model: int, size: int) -> nn.Module:
        if name in self.components:
            return ordinal.OrdinalLinear(d_model, size, self.components[name])
        return coarse.linear(d_model, size, self.bins.get(name))
