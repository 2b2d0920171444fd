"""python -m midiformer.prepare as a user runs it: prepares, then reuses and says so; bad input is one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from midiformer.data.store import Store
from tests.conftest import REPO
from tests.data.conftest import copy_corpus

pytestmark = pytest.mark.slow  # python -m midiformer.prepare in a subprocess


def prepare(*overrides, tmp_path):
    command = [sys.executable, "-m", "midiformer.prepare", f"data.cache_dir={tmp_path / 'cache'}",
               "data.num_workers=1", f"hydra.run.dir={tmp_path / 'outputs'}", *overrides]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_prepare_a_folder_then_reuse_it(small_files, tmp_path):
    root = copy_corpus(small_files[:4], tmp_path / "midi")
    first = prepare("data=midi_dir", f"data.root={root}", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    path = first.stdout.strip().splitlines()[-1]
    assert Store(path).manifest["songs"] == 4 and "4 songs" in first.stdout
    assert "encode (1 worker)" in first.stderr  # the progress bar
    second = prepare("data=midi_dir", f"data.root={root}", tmp_path=tmp_path)
    assert second.returncode == 0 and second.stdout.strip().splitlines()[-1] == path
    assert "reusing the prepared store" in second.stdout + second.stderr


def test_a_folder_without_midi_files_fails_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = prepare("data=midi_dir", f"data.root={tmp_path / 'empty'}", tmp_path=tmp_path)
    assert result.returncode == 2  # every app: a bad option or file is one line and status 2
    expected = f"error: data.root={tmp_path / 'empty'}: no MIDI files (*.mid, *.midi) in this folder or below"
    assert result.stderr.strip() == expected
    result = prepare("data=midi_dir", tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: data.root is required for data=midi_dir: add data.root=DIR"
