"""Folders that appear complete or not at all: built under a hidden temporary name, then renamed.

Used by the store (store.py) and the converted Bach chorales (bach.py), both in a cache folder that
several processes (the ranks of a job, on several hosts) may fill at the same time.
"""
from __future__ import annotations

import tempfile
from pathlib import Path


def temporary_folder_beside(path: Path) -> Path:
    """A new hidden folder next to `path`, unique even among processes on several hosts sharing the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
