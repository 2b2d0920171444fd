"""Shared fixtures: the real MIDI files of ../shared/data/midi_dev (see its README)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

def _find_dev_data() -> Path:
    if "MIDIFORMER_DEV_DATA" in os.environ:
        return Path(os.environ["MIDIFORMER_DEV_DATA"]).resolve()
    for candidate in (REPO.parent / "shared" / "data" / "midi_dev", Path("/work/shared/data/midi_dev")):
        if candidate.is_dir():
            return candidate.resolve()
    return REPO.parent / "shared" / "data" / "midi_dev"


DEV_DATA = _find_dev_data()
CONF_DIR = REPO / "conf"


def dev_files() -> list[Path]:
    return sorted(DEV_DATA.rglob("*.mid"))


@pytest.fixture(scope="session")
def dev_data() -> Path:
    if not DEV_DATA.is_dir():
        pytest.skip(f"dev corpus not found at {DEV_DATA} (set MIDIFORMER_DEV_DATA)")
    return DEV_DATA
