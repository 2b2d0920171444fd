"""The primer the model continues, and the whistle that marks where the model takes over.

A primer is a cut of a MIDI file's events: from `start_seconds`, `seconds` long (or `n_events`
rows). A cut that does not begin at the song's start gets a START row, then the tempo, programs,
controls (pedals, volume, pan) and pitch bends in force at the cut point (so that it plays as it
did in the song), then its rows; a note-off whose note began before the cut is dropped.

The whistle is a short note of General MIDI program Whistle on a channel the song does not use,
at the hand-over tick (the primer's last row). It goes into a copy of the events written to the
MIDI file only: the model never sees it.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from midiformer.codec import events
from midiformer.common import ConfigError

WHISTLE_PROGRAM = 78  # General MIDI "Whistle" (79 in the 1-based numbering of the GM tables)
_TYPE, _TIME, _CHANNEL, _INSTRUMENT, _NOTE, _VELOCITY, _DURATION = (
    events.TYPE, events.TIME, events.CHANNEL, events.INSTRUMENT, events.NOTE, events.VELOCITY, events.DURATION)


def start_row() -> np.ndarray:
    """The primer of an unprimed sample: a single START row."""
    row = np.zeros((1, len(events.FIELDS)), np.int64)
    row[0, _TYPE] = events.START
    return row


def load_primer(path: str | Path, ticks_per_beat: int, seconds: float | None = None, n_events: int | None = None,
                start_seconds: float = 0.0, **codec) -> np.ndarray:
    """Rows (T, F) of a primer cut from a MIDI file (MidiError if it is not one); see the module doc.
    codec: the other codec settings (controls, pitch_bend, durations) the model was trained with."""
    return load_cut(path, ticks_per_beat, seconds, n_events, start_seconds, **codec).primer


@dataclass
class Cut:
    """A primer and what the song plays after it: `rest` holds the song's rows after the cut, its first
    gap counted from the primer's last row (ending with the song's END), as a continuation would."""

    primer: np.ndarray
    rest: np.ndarray


def load_cut(path: str | Path, ticks_per_beat: int, seconds: float | None = None, n_events: int | None = None,
             start_seconds: float = 0.0, **codec) -> Cut:
    """The primer of load_primer and the song's real continuation after it (codec: as load_primer's)."""
    if not Path(path).is_file():
        raise ConfigError(f"primer={path}: no such file")
    codec = {key: value for key, value in codec.items() if value is not None}  # None: the codec's default
    song = events.encode(path, ticks_per_beat=ticks_per_beat, **codec).astype(np.int64)
    first = _first_row_at(song, start_seconds, ticks_per_beat)
    last = len(song) - 1  # END is never part of a primer: the model goes on from there
    if n_events is not None:
        last = min(last, first + n_events)
    elif seconds is not None:
        last = min(last, _first_row_at(song, start_seconds + seconds, ticks_per_beat))
    song_ticks = events.grid_ticks(song)
    if first == 1 and last > first:
        return Cut(song[:last], _rest(song, song_ticks, last, handover_row=last - 1))  # its own rows, untouched
    body, ticks = song[first:last], song_ticks[first:last]
    keep = (body[:, _TYPE] != events.TIME_SHIFT) & ~_ends_an_earlier_note(body)
    if not keep.any():
        raise ConfigError(f"primer={path}: no event in the cut ({start_seconds} s + {seconds} s, "
                          f"{n_events} events); the song lasts {events.seconds(song, ticks_per_beat):.1f} s")
    state = state_at(song, first)
    # The cut starts at its first event; the codec's own framing restores the gaps (and splits long ones).
    ticks = np.concatenate([np.zeros(len(state), np.int64), ticks[keep] - ticks[keep][0]])
    framed = events.frame_rows(np.concatenate([state, body[keep]]), ticks, int(ticks[-1]))
    rest = _rest(song, song_ticks, last, handover_row=first + int(np.nonzero(keep)[0][-1]))
    return Cut(framed[:-1].astype(np.int64), rest)  # without the END row: the model goes on from there


def _rest(song: np.ndarray, song_ticks: np.ndarray, first_row: int, handover_row: int) -> np.ndarray:
    """song[first_row:] with its first gap measured from the hand-over row (a gap of any length: the rows
    are for measuring, never for the model)."""
    rest = song[first_row:].copy()
    if len(rest):
        rest[0, _TIME] = song_ticks[first_row] - song_ticks[handover_row]
    return rest


def _first_row_at(song: np.ndarray, at_seconds: float, ticks_per_beat: int) -> int:
    """Index of the first row (after START) that plays at or after `at_seconds` into the song."""
    seconds_at = lambda i: events.seconds(song[: i + 1], ticks_per_beat)  # noqa: E731  (monotone in i)
    return max(bisect.bisect_left(range(len(song)), at_seconds, key=seconds_at), 1)


def state_at(song: np.ndarray, row: int) -> np.ndarray:
    """What is in force before `row`, at time 0: the last tempo row, and per channel its last program
    row, its last control row of each controller (pedals, volume, pan) and its last pitch bend."""
    before = song[:row]
    tempo_rows = np.nonzero(before[:, _TYPE] == events.TEMPO)[0]
    setting_rows = np.nonzero(np.isin(before[:, _TYPE], (events.PROGRAM, events.CONTROL, events.PITCH_BEND)))[0]
    last = {(int(before[i, _TYPE]), int(before[i, _CHANNEL]),
             int(before[i, _INSTRUMENT]) if before[i, _TYPE] == events.CONTROL else 0): i
            for i in setting_rows}  # later rows win
    keep = sorted(list(tempo_rows[-1:]) + list(last.values()))
    state = before[keep].copy()
    state[:, _TIME] = 0
    return state


def _ends_an_earlier_note(rows: np.ndarray) -> np.ndarray:
    """(T,) bool: note-offs whose note began before `rows` (the cut would leave them with nothing to end)."""
    orphan = (rows[:, _TYPE] == events.NOTE_OFF) & (events.note_partners(rows) < 0)
    return orphan


# --- the whistle ------------------------------------------------------------------------------


@dataclass
class Whistle:
    channel: int
    tick: int       # grid tick of the hand-over
    ticks: int      # its length in grid steps
    pitch: int


def free_channel(*parts: np.ndarray) -> int | None:
    """A melodic channel no row of `parts` uses, trying them from the first (the primer) to the
    whole song: the highest free channel of the most parts; None if the first part uses all 15."""
    used: set[int] = set()
    choice = None
    for rows in parts:
        is_channel_row = np.isin(rows[:, _TYPE], (events.NOTE_ON, events.NOTE_OFF, events.PROGRAM))
        used |= set(rows[is_channel_row, _CHANNEL].tolist())
        free = [c for c in range(15, -1, -1) if c != events.DRUM_CHANNEL and c not in used]
        if not free:
            break
        choice = free[0]
    return choice


def whistle_at_handover(primer: np.ndarray, song: np.ndarray, pitch: int, seconds: float,
                        ticks_per_beat: int) -> Whistle | None:
    """The whistle for a song (primer rows first): at the primer's last tick, `seconds` long at the tempo there."""
    channel = free_channel(primer, song)
    if channel is None:
        return None
    tempo_rows = primer[primer[:, _TYPE] == events.TEMPO]
    bpm = 120.0  # MIDI's default, until a tempo row
    if len(tempo_rows):
        bpm = float(events.bpm_of(tempo_rows[-1]))
    ticks = max(round(seconds * bpm / 60.0 * ticks_per_beat), 1)
    return Whistle(channel, int(events.grid_ticks(primer)[-1]), ticks, pitch)


def with_whistle(song: np.ndarray, whistle: Whistle) -> np.ndarray:
    """A copy of the song's rows with the whistle in (program, note-on, note-off), gaps recomputed."""
    rows = np.zeros((3, len(events.FIELDS)), np.int64)
    rows[:, _TYPE] = events.PROGRAM, events.NOTE_ON, events.NOTE_OFF
    rows[:, _CHANNEL], rows[:, _NOTE] = whistle.channel, whistle.pitch
    rows[:2, _INSTRUMENT], rows[1, _VELOCITY] = WHISTLE_PROGRAM, 100
    body, end_tick = song[:-1], int(events.grid_ticks(song)[-1])  # the song's last row is END
    ticks = np.concatenate([events.grid_ticks(body), [whistle.tick, whistle.tick, whistle.tick + whistle.ticks]])
    order = np.argsort(ticks, kind="stable")  # the whistle comes after the primer rows of its tick
    merged, ticks = np.concatenate([body, rows])[order], ticks[order]
    merged[:, _TIME] = np.diff(ticks, prepend=0)
    end = np.zeros((1, len(events.FIELDS)), np.int64)
    end[0, _TYPE], end[0, _TIME] = events.END, max(end_tick - ticks[-1], 0)
    return np.concatenate([merged, end])
