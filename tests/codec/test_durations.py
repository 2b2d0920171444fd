"""Durations on note-ons (data.codec.durations): the same music as a note_off row per note, in fewer rows."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from midiformer.codec import events, midi, to_midi
from midiformer.codec.notes import pair_notes
from midiformer.common import ConfigError
from tests.conftest import dev_files


def notes_after_decode(rows: np.ndarray, path) -> np.ndarray:
    """The notes (onset, offset, channel, pitch, velocity, program) of rows decoded and read back, sorted."""
    to_midi.decode(rows, path)
    notes = pair_notes(midi.read_midi(path))[0]
    return notes[np.lexsort(notes.T[::-1])]


@pytest.mark.slow  # all 473 dev files, encoded and decoded twice: about 60 s on 2 cores
def test_both_layouts_decode_to_the_same_notes_on_every_dev_file(tmp_path, dev_data):
    rows_with, rows_without = 0, 0
    for path in dev_files():
        with_durations, without = events.encode(path), events.encode(path, durations=False)
        assert np.array_equal(notes_after_decode(with_durations, tmp_path / "a.mid"),
                              notes_after_decode(without, tmp_path / "b.mid")), path
        assert events.count_notes(with_durations) == events.count_notes(without)
        rows_with, rows_without = rows_with + len(with_durations), rows_without + len(without)
    assert rows_with < 0.6 * rows_without  # one row per note instead of two (measured: 0.527)


def song_of(tmp_path, *notes: tuple[int, int, int]):
    """A one-track file at 96 ticks per quarter (the grid itself) of (onset, length, pitch) notes."""
    file = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    file.tracks.append(track)
    # At one tick: the note-offs of earlier notes, the note-ons, then the note-offs of notes of length 0.
    messages = sorted([(on, 1, pitch) for on, _, pitch in notes]
                      + [(on + length, 0 if length else 2, pitch) for on, length, pitch in notes])
    now = 0
    for tick, kind, pitch in messages:
        track.append(mido.Message("note_on" if kind == 1 else "note_off", note=pitch, velocity=64 if kind == 1 else 0,
                                  time=tick - now))
        now = tick
    file.save(tmp_path / "song.mid")
    return tmp_path / "song.mid"


def test_a_note_up_to_max_duration_carries_it_a_longer_one_stays_open(tmp_path):
    path = song_of(tmp_path, (0, events.MAX_DURATION, 60), (10, events.MAX_DURATION + 1, 62), (20, 0, 64))
    rows = events.encode(path)
    on = rows[rows[:, events.TYPE] == events.NOTE_ON]
    assert on[:, events.NOTE].tolist() == [60, 62, 64]
    assert on[:, events.DURATION].tolist() == [1 + events.MAX_DURATION, events.OPEN, 1 + 0]
    off = rows[rows[:, events.TYPE] == events.NOTE_OFF]
    assert off[:, events.NOTE].tolist() == [62]  # the only OPEN note keeps its note_off row
    notes = notes_after_decode(rows, tmp_path / "back.mid")
    assert (notes[:, 1] - notes[:, 0]).tolist() == [events.MAX_DURATION, events.MAX_DURATION + 1, 0]


def test_without_durations_every_note_is_open(tmp_path):
    rows = events.encode(song_of(tmp_path, (0, 96, 60), (48, 24, 64)), durations=False)
    assert (rows[rows[:, events.TYPE] == events.NOTE_ON, events.DURATION] == events.OPEN).all()
    assert (rows[:, events.TYPE] == events.NOTE_OFF).sum() == 2


def test_a_time_stretch_stretches_the_durations_as_positions():
    rows = np.zeros((3, len(events.FIELDS)), np.int64)
    rows[:, events.TYPE] = events.NOTE_ON
    rows[:, events.DURATION] = [1 + 10, events.OPEN, 1 + events.MAX_DURATION]
    stretched = events.stretch_durations(rows, np.array([5, 6, 7]), 1.5)
    # onset 5 -> 8 (7.5 rounded to even), end 15 -> 22 (22.5 to even): 14 steps; a MAX_DURATION note is cut to it
    assert stretched[:, events.DURATION].tolist() == [1 + 14, events.OPEN, 1 + events.MAX_DURATION]


def test_durations_must_be_true_or_false():
    with pytest.raises(ConfigError, match="data.codec.durations"):
        events.codec_settings(durations="yes")
