"""The grammar check: real songs pass it, and each rule, broken once in a real song, is caught."""
from __future__ import annotations

import numpy as np
import pytest

from midiformer.codec import events, grammar
from tests.conftest import DEV_DATA

TYPE, TIME, CHANNEL, INSTRUMENT, NOTE, VELOCITY, DURATION = range(len(events.FIELDS))
SONG = DEV_DATA / "openmsx" / "tttheme2.mid"  # programs change mid-song; tempo, drums, long rests


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    """The song with a note_off row per note (durations=False), whose rules most tests below break."""
    rows = events.encode(SONG, controls=[7, 10, 64], pitch_bend=True, durations=False).astype(np.int64)
    grammar.check(rows, song=True, controls=[7, 10, 64], pitch_bend=True)
    return rows


def first(rows, type_, where=None):
    hits = np.nonzero((rows[:, TYPE] == type_) & (True if where is None else where))[0]
    return int(hits[0])


def silent_note_off(rows):
    i = first(rows, events.NOTE_OFF)
    rows[i, NOTE] = (rows[i, NOTE] + 1) % 128 if rows[i, NOTE] != 127 else 0
    rows[i, CHANNEL] = 15  # tttheme2 plays nothing on channel 16


def wrong_program(rows):
    rows[first(rows, events.NOTE_ON), INSTRUMENT] += 1


def sounding_at_end(rows):
    rows[first(rows, events.NOTE_OFF)] = [events.TIME_SHIFT, events.MAX_TIME_SHIFT, 0, 0, 0, 0, 0]


def time_after_shift(rows):
    shift = rows[:, TYPE] == events.TIME_SHIFT
    rows[first(rows, events.TIME_SHIFT, shift & ~np.roll(shift, -1)) + 1, TIME] = 0


BREAKS = {
    "unknown type": lambda r: r.__setitem__((5, TYPE), len(events.TYPES)),
    "outside its vocabulary": lambda r: r.__setitem__((5, TIME), events.MAX_TIME_SHIFT + 1),
    "does not apply": lambda r: r.__setitem__((first(r, events.NOTE_OFF), VELOCITY), 5),
    "start with time": lambda r: r.__setitem__((0, TIME), 3),
    "does not begin a song": lambda r: r.__setitem__((first(r, events.TIME_SHIFT), TYPE), events.START),
    "end followed": lambda r: r.__setitem__((first(r, events.TIME_SHIFT), TYPE), events.END),
    "time_shift not of": lambda r: r.__setitem__((first(r, events.TIME_SHIFT), TIME), 100),
    "time 0 right after a time_shift": time_after_shift,
    "velocity 0": lambda r: r.__setitem__((first(r, events.NOTE_ON), VELOCITY), 0),
    "whose program is": wrong_program,
    "not sounding": silent_note_off,
    "note(s) sound": sounding_at_end,
    "tempo above 24 bits": lambda r: r.__setitem__((first(r, events.TEMPO), CHANNEL), events.TEMPO_CHANNELS),
    "tempo of 0": lambda r: r.__setitem__((first(r, events.TEMPO), slice(CHANNEL, None)), 0),
    "not carried": lambda r: r.__setitem__((first(r, events.CONTROL), INSTRUMENT), 91),
}


@pytest.mark.parametrize("rule", BREAKS)
def test_each_broken_rule_is_caught_in_one_line(song, rule):
    rows = song.copy()
    BREAKS[rule](rows)
    found = grammar.violations(rows, song=True, controls=[7, 10, 64], pitch_bend=True)
    assert any(rule in v for v in found), found
    with pytest.raises(grammar.GrammarError) as error:
        grammar.check(rows, song=True, controls=[7, 10, 64], pitch_bend=True)
    assert str(error.value).startswith("row ") and "\n" not in str(error.value)


def test_settings_decide_what_may_appear(song):
    with pytest.raises(grammar.GrammarError, match="not carried"):
        grammar.check(song, controls=[64])
    bend = song.copy()
    bend[first(bend, events.CONTROL)] = [events.PITCH_BEND, 0, 2, 0, 64, 0, 0]
    grammar.check(bend, song=True, controls=[7, 10, 64], pitch_bend=True)
    with pytest.raises(grammar.GrammarError, match="pitch_bend"):
        grammar.check(bend, pitch_bend=False)


def test_not_one_song(song):
    with pytest.raises(grammar.GrammarError, match="not one song"):
        grammar.check(song[:-1], song=True)
    grammar.check(np.concatenate([song, song]))  # two songs one after another, as in a store


def test_a_window_that_opens_mid_song_knows_no_state_before_its_start(song):
    ends = np.nonzero(song[:, TYPE] == events.NOTE_OFF)[0]
    window = song[ends[10]:]  # opens on the note-off of a note begun before it, programs unknown
    grammar.check(window)
    assert grammar.violations(window, follow_state=False) == []
    broken = window.copy()
    broken[1, TYPE] = events.START  # from a START on the state is known, so the same note-offs are errors
    assert any("start that does not begin a song" in v for v in grammar.violations(broken))


def test_a_note_with_a_duration_takes_no_note_off():
    """With durations (the default) a note-on of duration d + 1 ends by itself: a note_off for it is an
    error, as is a note_off for a note shortened past MAX_DURATION's OPEN marker; the OPEN notes keep theirs."""
    rows = events.encode(SONG).astype(np.int64)
    grammar.check(rows, song=True)
    closed = first(rows, events.NOTE_ON, rows[:, DURATION] != events.OPEN)
    off = rows[closed].copy()
    off[[TYPE, TIME, INSTRUMENT, VELOCITY, DURATION]] = events.NOTE_OFF, 0, 0, 0, 0
    broken = np.insert(rows, closed + 1, off, axis=0)
    with pytest.raises(grammar.GrammarError, match="which is not sounding"):
        grammar.check(broken, song=True)
    opened = rows.copy()
    opened[closed, DURATION] = events.OPEN  # now it needs a note_off before the END
    with pytest.raises(grammar.GrammarError, match="note.s. sound"):
        grammar.check(opened, song=True)
    grammar.check(np.insert(opened, closed + 1, off, axis=0), song=True)
