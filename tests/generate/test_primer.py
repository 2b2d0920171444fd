"""Primers cut from real songs (from the start or mid-song, with the tempo and programs in force), and
the whistle rows."""
from __future__ import annotations

import numpy as np
import pytest

from midiformer.codec import events, grammar
from midiformer.common import ConfigError
from midiformer.generate import primer
from tests.train.conftest import CORPUS

TYPE, TIME, CHANNEL, INSTRUMENT, NOTE, VELOCITY, DURATION = range(len(events.FIELDS))
# Songs with state changes mid-song: 65 tempo changes from 40 s on; program changes at 25, 63, 71 s.
MID_SONG_CUTS = [("midnight_snow_run.mid", 60.0), ("tttheme2.mid", 66.0)]


def row_seconds(song: np.ndarray) -> np.ndarray:
    """When each row plays, in seconds (the slow, obvious way: the duration of each prefix)."""
    return np.array([events.seconds(song[: i + 1]) for i in range(len(song))])


def note_ons(rows: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """(tick relative to the first note, channel, pitch, velocity, program) of every note_on."""
    ticks = events.grid_ticks(rows)
    on = rows[:, TYPE] == events.NOTE_ON
    return [(int(t - ticks[on][0]), *map(int, r[[CHANNEL, NOTE, VELOCITY, INSTRUMENT]]))
            for t, r in zip(ticks[on], rows[on])]


def test_a_cut_from_the_start_is_the_first_rows_of_the_song():
    song = events.encode(CORPUS / "coconut_run2.mid").astype(np.int64)
    rows = primer.load_primer(CORPUS / "coconut_run2.mid", 96, seconds=3.0)
    when = row_seconds(song)
    np.testing.assert_array_equal(rows, song[: len(rows)])
    assert rows[0, TYPE] == events.START and events.END not in rows[:, TYPE]
    assert when[len(rows) - 1] < 3.0 <= when[len(rows)]
    by_count = primer.load_primer(CORPUS / "coconut_run2.mid", 96, n_events=40, seconds=3.0)  # events wins
    np.testing.assert_array_equal(by_count, song[:41])


@pytest.mark.parametrize("name,start", MID_SONG_CUTS)
def test_a_mid_song_cut_plays_with_the_tempo_and_programs_in_force(name, start):
    song = events.encode(CORPUS / name).astype(np.int64)
    rows = primer.load_primer(CORPUS / name, 96, seconds=4.0, start_seconds=start)
    when = row_seconds(song)
    before, inside = when < start, (when >= start) & (when < start + 4.0)
    assert rows[0, TYPE] == events.START and events.START not in rows[1:, TYPE]

    tempo_rows = rows[rows[:, TYPE] == events.TEMPO]
    expected_tempo = song[before & (song[:, TYPE] == events.TEMPO)][-1]
    assert len(tempo_rows) >= 1 and tuple(tempo_rows[0, [NOTE, VELOCITY]]) == tuple(expected_tempo[[NOTE, VELOCITY]])
    programs_then = {int(r[CHANNEL]): int(r[INSTRUMENT]) for r in song[before & (song[:, TYPE] == events.PROGRAM)]}
    first_note = np.argmax(rows[:, TYPE] == events.NOTE_ON)
    assert {int(r[CHANNEL]): int(r[INSTRUMENT]) for r in rows[:first_note] if r[TYPE] == events.PROGRAM} == programs_then
    assert note_ons(rows) == note_ons(song[inside])
    primer_onsets = row_seconds(rows)[rows[:, TYPE] == events.NOTE_ON]
    song_onsets = when[inside & (song[:, TYPE] == events.NOTE_ON)]
    np.testing.assert_allclose(primer_onsets - primer_onsets[0], song_onsets - song_onsets[0], atol=1e-9)  # same speed
    # No note-off of a note the primer did not start: the codec's decoder would drop it, the sampler would not.
    sounding = np.zeros((16, 128), int)
    for r in rows:
        sounding[r[CHANNEL], r[NOTE]] += int(r[TYPE] == events.NOTE_ON) - int(r[TYPE] == events.NOTE_OFF)
        assert sounding.min() >= 0


def test_bad_primers_are_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        primer.load_primer(tmp_path / "missing.mid", 96, seconds=2.0)
    text = tmp_path / "notes.mid"
    text.write_text("not a MIDI file")
    with pytest.raises(events.MidiError, match="not a MIDI file"):
        primer.load_primer(text, 96, seconds=2.0)
    with pytest.raises(ConfigError, match="no event in the cut"):
        primer.load_primer(CORPUS / "coconut_run2.mid", 96, seconds=2.0, start_seconds=500.0)


def test_the_whistle_channel_is_free_and_melodic():
    song = events.encode(CORPUS / "tttheme2.mid").astype(np.int64)  # channels 0-6, 8-12
    start, whole = song[:200], song
    used_early = set(start[np.isin(start[:, TYPE], (events.NOTE_ON, events.NOTE_OFF, events.PROGRAM)), CHANNEL].tolist())
    channel = primer.free_channel(start, whole)
    assert channel not in used_early and channel != events.DRUM_CHANNEL
    assert channel == 15  # the highest channel the whole song leaves free
    every_channel = np.zeros((16, len(events.FIELDS)), np.int64)
    every_channel[:, TYPE], every_channel[:, CHANNEL] = events.PROGRAM, np.arange(16)
    assert primer.free_channel(every_channel) is None


def test_the_whistle_sounds_at_the_handover_and_moves_nothing_else():
    song = events.encode(CORPUS / "coconut_run2.mid").astype(np.int64)
    start = song[:60]
    whistle = primer.whistle_at_handover(start, song, pitch=84, seconds=0.5, ticks_per_beat=96)
    handover = int(events.grid_ticks(start)[-1])
    bpm = float(events.bpm_of(start[1]))  # the song's one tempo, row 1
    assert (whistle.tick, whistle.ticks) == (handover, round(0.5 * bpm / 60 * 96))
    written = primer.with_whistle(song, whistle)
    ticks = events.grid_ticks(written)
    is_whistle = (written[:, CHANNEL] == whistle.channel) & (written[:, TYPE] != events.END)
    assert written[is_whistle][:, TYPE].tolist() == [events.PROGRAM, events.NOTE_ON, events.NOTE_OFF]
    assert written[is_whistle][0, INSTRUMENT] == primer.WHISTLE_PROGRAM
    assert ticks[is_whistle].tolist() == [handover, handover, handover + whistle.ticks]
    np.testing.assert_array_equal(ticks[~is_whistle], events.grid_ticks(song))
    np.testing.assert_array_equal(np.delete(written, np.nonzero(is_whistle)[0], 0)[:, [TYPE, CHANNEL, NOTE]],
                                  song[:, [TYPE, CHANNEL, NOTE]])


def test_a_cut_restores_the_pedals_and_mix_in_force(dev_data):
    path = dev_data / "pop909" / "pop909_001.mid"  # the piano is pedalled all through the song
    song = events.encode(path).astype(np.int64)
    start = primer.load_primer(path, 96, seconds=4.0, start_seconds=60.0)
    head = start[1:np.argmax(start[:, 0] == events.NOTE_ON)]  # the state rows, before the cut's own rows
    assert (head[:, 1] == 0).all() and events.CONTROL in head[:, 0]
    cut_row = np.searchsorted(events.seconds_at(song), 60.0)
    for row in head[head[:, 0] == events.CONTROL]:  # each the last value of its channel's controller
        same = (song[:cut_row, 0] == events.CONTROL) & (song[:cut_row, 2] == row[2]) & (song[:cut_row, 3] == row[3])
        assert song[:cut_row][same][-1, 5] == row[5]
    grammar.check(start)  # state rows after START, then the cut: a sequence the codec could write
