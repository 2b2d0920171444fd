"""The one Registry type: every swappable component is registered once and chosen by name.

    NORMS = Registry("model.norm")

    @NORMS.register("scalenorm")
    class ScaleNorm(nn.Module): ...

    NORMS.build(cfg.model.norm, d_model=512)   # cfg has `name` plus the component's own options

An unknown name fails before any work, listing what is registered.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from midiformer.common import ConfigError

__all__ = ["ConfigError", "Registry"]


class Registry:
    def __init__(self, option: str):
        self.option = option  # the config key that chooses from this registry, for error messages
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.option}: '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise ConfigError(f"{self.option}={name!r} is unknown; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def build(self, cfg: Mapping[str, Any] | str, **kwargs: Any) -> Any:
        """Build from a config node `{name: ..., **options}` (or a bare name), plus extra kwargs."""
        if isinstance(cfg, str):
            name, options = cfg, {}
        else:
            options = {k: v for k, v in dict(cfg).items() if k != "name"}
            name = cfg["name"]
        return self.get(name)(**options, **kwargs)
