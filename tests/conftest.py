"""Shared fixtures: the real MIDI files of ../shared/data/midi_dev (see its README)."""
from __future__ import annotations

from pathlib import Path

import pytest

from midiformer.common import dev_corpus

REPO = Path(__file__).resolve().parents[1]

DEV_DATA = dev_corpus(REPO)
CONF_DIR = REPO / "conf"


def dev_files() -> list[Path]:
    return sorted(DEV_DATA.rglob("*.mid"))


@pytest.fixture(scope="session")
def dev_data() -> Path:
    if not DEV_DATA.is_dir():
        pytest.skip(f"dev corpus not found at {DEV_DATA} (set MIDIFORMER_DEV_DATA)")
    return DEV_DATA
