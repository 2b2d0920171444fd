"""MIDI's tempo, carried exactly: decoded songs keep their time in seconds over their whole length."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from midiformer.codec import events
from tests.codec import mido_oracle
from tests.codec.test_roundtrip import assert_same_music, roundtrip
from tests.conftest import DEV_DATA


@pytest.mark.parametrize("microseconds", [1, 499_970, 500_000, 461_538, 652_174, 2**24 - 1])
def test_tempo_fields_hold_every_24_bit_value(microseconds):
    row = np.zeros(len(events.FIELDS), np.int64)
    row[0] = events.TEMPO
    row[2:6] = events.tempo_fields(microseconds)
    assert events.tempo_of(row) == microseconds
    assert row[events.COLUMN["channel"]] < events.TEMPO_CHANNELS
    assert all(0 <= v < events.VOCAB[f] for f, v in zip(events.FIELDS, row))


def long_song(path, minutes: float, tempo: int, ticks_per_quarter: int = 480):
    """One tempo, a note on every beat for `minutes`: the drift of a tempo that is not exact grows with time."""
    song = mido.MidiFile(ticks_per_beat=ticks_per_quarter)
    track = mido.MidiTrack()
    song.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    for _ in range(int(minutes * 60e6 / tempo)):
        track.append(mido.Message("note_on", note=60, velocity=80, time=0))
        track.append(mido.Message("note_off", note=60, time=ticks_per_quarter))
    song.save(path)
    return path


@pytest.mark.parametrize("tempo", [500_000, 461_538])  # 120 BPM (MIDI's default), 130 BPM
def test_a_27_minute_song_ends_on_time(tmp_path, tempo):
    path = long_song(tmp_path / "long.mid", 27, tempo)
    decoded = roundtrip(path, tmp_path)
    original, back = mido_oracle.read(path)["notes"][0, 60], mido_oracle.read(decoded)["notes"][0, 60]
    assert original[-1][7] > 26 * 60
    errors = np.abs(np.array(original)[:, 6:8] - np.array(back)[:, 6:8])
    assert errors.max() < 1e-6  # every onset and offset is on the grid here: the time in seconds is exact
    assert mido.MidiFile(decoded).length == pytest.approx(mido.MidiFile(path).length, abs=1e-6)
    assert events.seconds(events.encode(path)) == pytest.approx(mido.MidiFile(path).length, abs=1e-6)
    assert_same_music(path, decoded)


def test_seconds_follow_every_tempo_change():
    path = DEV_DATA / "openmsx" / "midnight_snow_run.mid"  # 31 tempos
    rows = events.encode(path)
    assert events.seconds(rows) == pytest.approx(mido.MidiFile(path).length, abs=5e-3)
    on = rows[:, 0] == events.NOTE_ON
    onsets = np.sort(events.seconds_at(rows)[on])
    want = np.sort([n[6] for notes in mido_oracle.read(path)["notes"].values() for n in notes])
    assert np.abs(onsets - want).max() < 0.5 / 96 * 60 / 40 + 1e-3  # half a step at the slowest tempo (> 40 BPM)
