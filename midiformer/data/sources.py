"""Data sources: where the MIDI files of a corpus come from, one registered function each, chosen by
the `data` config group (conf/data/<name>.yaml sets `name`).

A source is called as `DATA_SOURCES.get(cfg.data.name)(cfg.data)` and returns the folder of MIDI
files to prepare and the name its store is filed under (<cache_dir>/stores/<name>-<key>). Adding a
corpus is one function here and one YAML in conf/data/; store.py prepares any folder the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import OmegaConf

from midiformer.common import ConfigError
from midiformer.registry import Registry

DATA_SOURCES = Registry("data")


class Source(NamedTuple):
    root: Path  # the folder of MIDI files
    name: str  # the store's name prefix


@DATA_SOURCES.register("bach")
def bach_chorales(data_cfg: Any) -> Source:
    """music21's Bach chorales, converted to MIDI once into the cache (bach.py)."""
    from midiformer.data import bach  # music21 is slow to import: only when asked for

    cache_dir = Path(str(data_cfg.cache_dir)).expanduser()
    return Source(bach.convert_chorales(cache_dir, data_cfg.get("num_workers"), data_cfg.get("limit")), "bach")


@DATA_SOURCES.register("midi_dir")
def midi_dir(data_cfg: Any) -> Source:
    """Any folder of MIDI files, data.root; the store is named after the folder."""
    if OmegaConf.is_missing(data_cfg, "root") or not data_cfg.get("root"):
        raise ConfigError(f"data.root is required for data={data_cfg.name}: add data.root=DIR")
    root = Path(str(data_cfg.root)).expanduser().resolve()
    return Source(root, root.name)


def data_source(data_cfg: Any) -> Source:
    """The source `data_cfg.name` names (an unknown name is refused, listing the registered ones)."""
    return DATA_SOURCES.get(data_cfg.name)(data_cfg)
