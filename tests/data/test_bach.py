"""The built-in data on the first three chorales (the full ~410 take about a minute on 2 cores)."""
from __future__ import annotations

import logging

import pytest

from midiformer.codec import events
from midiformer.data import bach
from midiformer.data.store import Store, prepare_store
from tests.data.conftest import compose


def test_chorale_sources_are_the_chorales_once_each():
    sources = bach.chorale_sources()
    assert 400 <= len(sources) <= 420
    assert len({s.stem for s in sources}) == len(sources)  # no chorale twice in two formats
    assert bach.chorale_sources(limit=3) == sources[:3]


def test_three_chorales_convert_once_and_prepare_like_any_folder(tmp_path, monkeypatch, caplog):
    cfg = compose("prepare", [f"data.cache_dir={tmp_path / 'cache'}", "data.limit=3", "data.num_workers=1"]).data
    path = prepare_store(cfg)
    s = Store(path)
    assert s.manifest["files_found"] == s.manifest["songs"] == 3 and s.manifest["skipped"] == []
    assert 3 * 20 < s.manifest["notes"] < 3 * 400  # a four-part chorale has a few hundred notes
    folder = next((tmp_path / "cache").glob("bach_midi-v*-music21-*-first3"))
    midi_files = sorted(folder.glob("*.mid"))
    assert [f.stem for f in midi_files] == [p.stem for p in bach.chorale_sources(limit=3)]
    for midi_file in midi_files:  # one channel per voice: 0..3 for S, A, T, B (bwv1.6 adds a horn part)
        song, _ = events.encode_song(midi_file)
        channels = set(song[song[:, 0] == events.NOTE_ON, events.COLUMN["channel"]].tolist())
        assert channels == set(range(len(channels))) and len(channels) >= 4, midi_file.name
    monkeypatch.setattr(bach, "convert_one", lambda job: pytest.fail("converted again"))
    with caplog.at_level(logging.INFO):
        assert prepare_store(cfg) == path
    assert "converted earlier" in caplog.text and "reusing the prepared store" in caplog.text


def test_a_failed_conversion_is_reported_not_fatal(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        reason = bach.convert_one((str(tmp_path / "missing.mxl"), str(tmp_path / "out.mid")))
    assert reason.startswith("missing.mxl: ") and not (tmp_path / "out.mid").exists()
