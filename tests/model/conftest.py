"""Model-test helpers: real event windows from two small dev files, masked targets, tiny configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from midiformer.codec import events
from midiformer.data.dataset import mask_targets, split_inputs_targets  # noqa: F401  (re-exported to tests)
from tests.conftest import CONF_DIR

SONGS = ("openmsx/coconut_run2.mid", "pop909/pop909_235.mid")  # ~1.7k and ~1.5k events; all event types


@pytest.fixture(scope="session")
def songs(dev_data) -> list[np.ndarray]:
    return [events.encode(dev_data / name) for name in SONGS]


def windows(songs: list[np.ndarray], batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """(batch, length + 1, F) windows at random offsets of the songs, as int64."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(batch):
        song = songs[i % len(songs)]
        start = rng.integers(0, len(song) - length - 1)
        rows.append(song[start : start + length + 1])
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def split(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T + 1, F) windows -> inputs (B, T, F), masked targets (B, T, F): the dataset's own split."""
    return split_inputs_targets(batch)


def tiny_config(norm: str = "layernorm", init: str = "pytorch", **overrides):
    """cfg.model for conf/model/tiny.yaml with a norm from conf/model/norm, the default positions and heads
    (learned positions, not the apps' rope_time: conf/model/pos/learned.yaml, and conf/model/heads/parallel.yaml;
    `pos="rope"` etc. override by name) and an init by name."""
    cfg = OmegaConf.load(CONF_DIR / "model" / "tiny.yaml")
    cfg.pop("defaults")  # Hydra's defaults list of the preset: its choices are set below
    cfg.ticks_per_beat = 96  # in the apps: ${data.codec.ticks_per_beat}
    cfg.norm = OmegaConf.load(CONF_DIR / "model" / "norm" / f"{norm}.yaml")
    cfg.pos = OmegaConf.load(CONF_DIR / "model" / "pos" / "learned.yaml")
    cfg.heads = OmegaConf.load(CONF_DIR / "model" / "heads" / "parallel.yaml")
    cfg.init = {"name": init}
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg
