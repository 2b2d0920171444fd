"""Fixtures of the data tests: small corpora copied from the real dev files, and a prepared store."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from midiformer.codec import events
from midiformer.data.store import Store, prepare_store
from tests.conftest import CONF_DIR, DEV_DATA, dev_files

# A spread of the dev corpus, small enough to prepare in about a second: drum-only Groove files, multi-track
# OpenMSX files (tempo and program changes, drums, a note-on never ended), a Planet Blupi song and POP909.
ODDITIES = ["openmsx/chuggachugga.mid", "openmsx/midnight_snow_run.mid", "openmsx/tttheme2.mid"]


def subset() -> list[Path]:
    by_folder = {folder: [f for f in dev_files() if f.parent.name == folder]
                 for folder in ("groove", "openmsx", "planetblupi", "pop909")}
    picked = by_folder["groove"][::40] + by_folder["planetblupi"][:1] + by_folder["pop909"][::50]
    return picked + [DEV_DATA / name for name in ODDITIES]


def copy_corpus(files: list[Path], folder: Path) -> Path:
    """Copy dev files into folder/<source>/<name>, keeping modification times like a real corpus."""
    for source in files:
        target = folder / source.relative_to(DEV_DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return folder


def data_config(root: Path | None, cache_dir: Path, **options):
    cfg = {"name": "midi_dir", "root": str(root), "cache_dir": str(cache_dir),
           "codec": {"ticks_per_beat": 96, "controls": list(events.DEFAULT_CONTROLS), "pitch_bend": True},
           "splits": {"train": 0.9, "val": 0.05, "test": 0.05}, "num_workers": 1, **options}
    return OmegaConf.create(cfg)


@pytest.fixture(scope="session")
def small_files(dev_data) -> list[Path]:
    files = subset()
    assert len(files) == 15 and all(f.is_file() for f in files)
    return files


@pytest.fixture
def corpus_dir(small_files, tmp_path) -> Path:
    """A fresh copy of the small corpus that a test may change."""
    return copy_corpus(small_files, tmp_path / "midi")


@pytest.fixture(scope="session")
def small_store(small_files, tmp_path_factory) -> Store:
    """The small corpus prepared once per session (read-only: do not change it)."""
    base = tmp_path_factory.mktemp("small_store")
    root = copy_corpus(small_files, base / "midi")
    return Store(prepare_store(data_config(root, base / "cache")))


@pytest.fixture(scope="session")
def note_off_store(small_files, tmp_path_factory) -> Store:
    """The small corpus with a note_off row per note (data.codec.durations=false): what the tests of the
    note-off rules (notes sounding before a window, the ends of notes) need many of."""
    base = tmp_path_factory.mktemp("note_off_store")
    root = copy_corpus(small_files, base / "midi")
    cfg = data_config(root, base / "cache")
    cfg.codec.durations = False
    return Store(prepare_store(cfg))


def compose(config_name: str, overrides: list[str]):
    """A config composed from conf/ exactly as the apps compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=overrides)
