"""The codec: a MIDI file <-> a sequence of events, one row of integer fields per event.

Public API: FIELDS, VOCAB, TYPES (and a constant per type), APPLIES, IGNORE, encode, plus the
helpers the loss, the store and generation need. Decoding (events -> a MIDI file) is codec/to_midi.py;
the rules a sequence obeys are in codec/grammar.py.

Each row is (type, time, channel, instrument, note, velocity, duration); the field order is the order
in which a cascade head chooses them (the channel decides which notes are sounding, so it comes before
note). `time` is the gap since the previous row in grid steps (`ticks_per_beat` steps per quarter note).
What each field holds, per type (a field not listed holds 0 and is masked in the loss):

    type        time  channel        instrument            note             velocity     duration
    start       0     .              .                     .                .            .       row 0 of every song
    end         gap   .              .                     .                .            .       last row; gap to the song's end
    note_on     gap   MIDI channel   the channel's program pitch            velocity 1..127  OPEN or 1 + steps
    note_off    gap   MIDI channel   .                     pitch            .            .       ends an OPEN note
    program     gap   MIDI channel   program 0..127        .                .
    tempo       gap   bits 21-23     bits 14-20            bits 7-13        bits 0-6     of the 24-bit us per quarter
    time_shift  384   .              .                     .                .            rest longer than 384 steps
    control     gap   MIDI channel   controller number     .                value 0..127 one of settings' `controls`
    pitch_bend  gap   MIDI channel   .                     bits 7-13 (MSB)  bits 0-6     14-bit bend, 8192 = none

The tempo is MIDI's own value, microseconds per quarter note, split over four fields (the channel
field takes the top 3 bits, 0..7), so a decoded file's time in seconds keeps only the grid's error
(half a step at the tempo there; tempo changes off the grid: see tempo_grid_ticks).
A control row's instrument field holds the MIDI controller number itself (64 = sustain pedal), not
an index into the carried list, so that a row means the same under any settings and decode needs
none.

A note-on's `duration` is either OPEN (0: a note_off row ends the note later) or 1 + the note's length
in grid steps, 0..MAX_DURATION (the note ends by itself, with no note_off row). With `durations` on, every
note up to MAX_DURATION steps long is coded on its note-on (99.6 % of the dev corpus' notes): one row per
note instead of two (Music Transformer's note-off rows cost a row per note; SkyTNT's midi-model and
anticipation put the duration on the note). Longer notes stay OPEN, so the codec stays lossless.

Settings (the keys of `data.codec`, taken by encode as keyword arguments):

    ticks_per_beat  grid steps per quarter note (96)
    durations       code a note's length on its note-on (true) or end every note with a note_off row
                    (false: CODEC_VERSION 3's layout; every duration OPEN)
    controls        controller numbers to carry as control rows ([] and pitch_bend=False: the seed's
                    seven types only); a control change of any other controller is dropped, counted
    pitch_bend      carry pitch bends as pitch_bend rows
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from midiformer.common import ConfigError

FIELDS = ("type", "time", "channel", "instrument", "note", "velocity", "duration")
COLUMN = {name: i for i, name in enumerate(FIELDS)}
# The column of each field, for code that indexes rows: rows[:, events.TIME]
TYPE, TIME, CHANNEL, INSTRUMENT, NOTE, VELOCITY, DURATION = (COLUMN[f] for f in FIELDS)

TYPES = ("start", "end", "note_on", "note_off", "program", "tempo", "time_shift", "control", "pitch_bend")
START, END, NOTE_ON, NOTE_OFF, PROGRAM, TEMPO, TIME_SHIFT, CONTROL, PITCH_BEND = range(len(TYPES))
SEED_TYPES = TYPES[:7]  # what the codec writes with controls=[] and pitch_bend=False

MAX_TIME_SHIFT = 384  # grid steps a single row can carry: one 4/4 bar at 96 steps per beat
MAX_DURATION = 384  # the longest note a note-on codes by itself (steps); a longer one stays OPEN
OPEN = 0  # a note-on's duration when a note_off row ends the note
VOCAB = {"type": len(TYPES), "time": MAX_TIME_SHIFT + 1, "channel": 16, "instrument": 128, "note": 128, "velocity": 128,
         "duration": MAX_DURATION + 2}
DRUM_CHANNEL = 9  # General MIDI channel 10
TEMPO_BITS = 24  # a MIDI set-tempo event: 3 bytes of microseconds per quarter note
TEMPO_CHANNELS = 1 << (TEMPO_BITS - 21)  # the channel field of a tempo row holds bits 21-23: values 0..7
DEFAULT_TEMPO = 500_000  # MIDI's default until the first tempo event: 120 BPM
PITCH_BEND_CENTER = 8192

# APPLIES[type, field]: does the field carry information for this event type? Masked in the loss where not.
_APPLIES_BY_TYPE = {
    START: ("type", "time"),
    END: ("type", "time"),
    NOTE_ON: FIELDS,
    NOTE_OFF: ("type", "time", "channel", "note"),
    PROGRAM: ("type", "time", "channel", "instrument"),
    TEMPO: ("type", "time", "channel", "instrument", "note", "velocity"),
    TIME_SHIFT: ("type", "time"),
    CONTROL: ("type", "time", "channel", "instrument", "velocity"),
    PITCH_BEND: ("type", "time", "channel", "note", "velocity"),
}
APPLIES = np.array([[f in _APPLIES_BY_TYPE[t] for f in FIELDS] for t in range(len(TYPES))], dtype=bool)

IGNORE = -100  # torch.nn.functional.cross_entropy's ignore_index: a target that does not count

# The pedals a pianist plays (64 sustain, 66 sostenuto, 67 soft) and the mix of a multi-track song
# (7 volume, 10 pan, 11 expression); see docs/codec.md for what they cost and why these.
DEFAULT_CONTROLS = (64, 66, 67, 7, 10, 11)
CHANNEL_MODE = range(120, 128)  # "all notes off" & co. act on the notes themselves: never carried

CODEC_VERSION = "4"  # bump when encode's output changes: prepared stores are keyed by it

from midiformer.codec import midi  # noqa: E402
from midiformer.codec.midi import MidiError  # noqa: E402, F401  (re-exported: the codec's one error type)
from midiformer.codec.notes import match_first_in_first_out, pair_notes_with_indices  # noqa: E402


def codec_settings(ticks_per_beat: int = 96, controls: Iterable[int] = DEFAULT_CONTROLS,
                   pitch_bend: bool = True, durations: bool = True) -> dict:
    """The settings checked and in their one form (controls sorted): what the store key hashes."""
    if isinstance(ticks_per_beat, bool) or not isinstance(ticks_per_beat, int) or ticks_per_beat < 1:
        raise ConfigError(f"data.codec.ticks_per_beat={ticks_per_beat!r} must be a positive integer")
    for name, value in (("pitch_bend", pitch_bend), ("durations", durations)):
        if not isinstance(value, bool):
            raise ConfigError(f"data.codec.{name}={value!r} must be true or false")
    if isinstance(controls, (str, int)):
        raise ConfigError(f"data.codec.controls={controls!r} must be a list of controller numbers, e.g. [64, 7]")
    controls = list(controls)
    for number in controls:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 120:
            mode = " (120-127 are channel mode messages, not controllers)" if number in CHANNEL_MODE else ""
            raise ConfigError(f"data.codec.controls: {number!r} is not a controller number 0-119{mode}")
    if len(set(controls)) < len(controls):
        raise ConfigError(f"data.codec.controls={controls} names a controller twice")
    return {"ticks_per_beat": ticks_per_beat, "controls": sorted(controls), "pitch_bend": pitch_bend,
            "durations": durations}


# --- tempo: MIDI's 24-bit value over four fields --------------------------------------------------

_TEMPO_COLUMNS = [COLUMN[f] for f in ("channel", "instrument", "note", "velocity")]
_TEMPO_SHIFTS = np.array([21, 14, 7, 0])


def tempo_fields(microseconds_per_quarter) -> np.ndarray:
    """(..., 4) channel, instrument, note, velocity of tempo rows holding these tempos."""
    value = np.asarray(microseconds_per_quarter, dtype=np.int64)[..., None]
    return (value >> _TEMPO_SHIFTS) & 127


def tempo_of(rows: np.ndarray) -> np.ndarray:
    """Microseconds per quarter note held by tempo rows (..., len(FIELDS))."""
    return (np.asarray(rows, dtype=np.int64)[..., _TEMPO_COLUMNS] << _TEMPO_SHIFTS).sum(-1)


def bpm_of(rows: np.ndarray) -> np.ndarray:
    """Beats per minute of tempo rows."""
    return 60e6 / np.maximum(tempo_of(rows), 1)


# --- encode -----------------------------------------------------------------------------------

# At one grid tick, rows go in this order so that decoding pairs every note-off with its own note:
# an ending note frees its pitch before anything else, and a note of zero length (on and off on the
# same tick) is closed only after it has started. Program changes, controls, bends and note-ons keep
# the order of the file's messages: a note-on keeps the program its channel had when it was played.
_OFF, _TEMPO, _IN_FILE_ORDER, _ZERO_LENGTH_OFF = range(4)


def encode(path: str | Path, **settings) -> np.ndarray:
    """Events of a MIDI file: int16 array of shape (n_events, len(FIELDS)). settings: see the module doc."""
    return encode_song(path, **settings)[0]


def encode_song(path: str | Path, **settings) -> tuple[np.ndarray, dict[str, int]]:
    """Events of a MIDI file plus counts of what the codec met (and how it dealt with it)."""
    settings = codec_settings(**settings)
    messages = midi.read_midi(path)
    notes, programs, stats = pair_notes_with_indices(messages)
    controls, control_stats = _controls(messages, settings["controls"], settings["pitch_bend"])
    tempos, tempo_stats = _tempos(messages)
    rows = _to_events(notes, programs, controls, tempos, messages, settings["ticks_per_beat"], settings["durations"])
    return rows, {**stats, **control_stats, **tempo_stats}


def _controls(messages: midi.MidiMessages, controls: list[int], pitch_bend: bool) -> tuple[np.ndarray, dict]:
    """Carried control changes and pitch bends as rows (tick, type, channel, instrument, note, velocity,
    message index). A message that repeats the value its controller (or bend) already holds on its
    channel changes nothing a synthesizer plays: it is dropped and counted."""
    is_control = messages.kind == midi.CONTROL_CHANGE
    carried = is_control & np.isin(messages.data1, controls)
    is_bend = messages.kind == midi.PITCH_BEND
    stats = {"dropped_controls": int((is_control & ~carried).sum()),
             "dropped_pitch_bends": 0 if pitch_bend else int(is_bend.sum())}
    keep = np.nonzero(carried | (is_bend & pitch_bend))[0]
    bend = messages.kind[keep] == midi.PITCH_BEND
    value = np.where(bend, messages.data1[keep], messages.data2[keep])
    key = messages.channel[keep] * 256 + np.where(bend, 255, messages.data1[keep])
    order = np.lexsort((keep, key))  # each (channel, controller) in file order
    same_key = key[order][1:] == key[order][:-1]
    repeat = np.zeros(len(keep), bool)
    repeat[order[1:]] = same_key & (value[order][1:] == value[order][:-1])
    stats["repeated_controls"] = int(repeat.sum())
    keep, bend, value = keep[~repeat], bend[~repeat], value[~repeat]
    rows = np.zeros((len(keep), 7), np.int64)
    rows[:, 0], rows[:, 1], rows[:, 2] = messages.tick[keep], np.where(bend, PITCH_BEND, CONTROL), messages.channel[keep]
    rows[:, 3] = np.where(bend, 0, messages.data1[keep])
    rows[:, 4], rows[:, 5] = np.where(bend, value >> 7, 0), value & 127
    rows[:, 6] = keep
    return rows, stats


def _tempos(messages: midi.MidiMessages) -> tuple[np.ndarray, dict]:
    """Tempo events as rows (tick, microseconds per quarter, message index). A tempo of 0 (infinitely
    fast: no player can follow it) is dropped and counted."""
    index = np.nonzero(messages.kind == midi.TEMPO)[0]
    valid = messages.data1[index] > 0
    stats = {"tempo_changes": int(valid.sum()), "invalid_tempos": int((~valid).sum())}
    index = index[valid]
    return np.stack([messages.tick[index], messages.data1[index], index], axis=1).reshape(-1, 3), stats


def _to_events(notes: np.ndarray, programs: np.ndarray, controls: np.ndarray, tempos: np.ndarray,
               messages: midi.MidiMessages, ticks_per_beat: int, durations: bool) -> np.ndarray:
    def to_grid(ticks: np.ndarray) -> np.ndarray:  # round half up, in integers: exact and stable
        return (2 * np.asarray(ticks, np.int64) * ticks_per_beat + messages.ticks_per_quarter) // (
            2 * messages.ticks_per_quarter)

    def part(n: int, type_: int, **fields: np.ndarray) -> np.ndarray:
        rows = np.zeros((n, len(FIELDS)), np.int64)
        rows[:, 0] = type_
        for name, values in fields.items():
            rows[:, COLUMN[name]] = values
        return rows

    onset, offset = to_grid(notes[:, 0]), to_grid(notes[:, 1])
    n = len(notes)
    length = offset - onset
    closed = (length <= MAX_DURATION) if durations else np.zeros(n, bool)  # ends by itself: no note_off row
    duration = np.where(closed, 1 + length, OPEN)
    tempo_rows = part(len(tempos), TEMPO)
    tempo_rows[:, _TEMPO_COLUMNS] = tempo_fields(tempos[:, 1])
    control_rows = np.zeros((len(controls), len(FIELDS)), np.int64)
    control_rows[:, [COLUMN[f] for f in ("type", "channel", "instrument", "note", "velocity")]] = controls[:, 1:6]
    rows = np.concatenate([
        part(n, NOTE_ON, channel=notes[:, 2], instrument=notes[:, 5], note=notes[:, 3], velocity=notes[:, 4],
             duration=duration),
        part(n, NOTE_OFF, channel=notes[:, 2], note=notes[:, 3]),
        tempo_rows,
        part(len(programs), PROGRAM, channel=programs[:, 1], instrument=programs[:, 2]),
        control_rows,
    ])
    tempo_ticks = tempo_grid_ticks(tempos[:, 0], tempos[:, 1], messages.ticks_per_quarter, ticks_per_beat)
    grid_tick = np.concatenate([onset, offset, tempo_ticks, to_grid(programs[:, 0]), to_grid(controls[:, 0])])
    priority = np.concatenate([np.full(n, _IN_FILE_ORDER), np.where(offset > onset, _OFF, _ZERO_LENGTH_OFF),
                               np.full(len(tempos), _TEMPO), np.full(len(programs) + len(controls), _IN_FILE_ORDER)])
    message_index = np.concatenate([notes[:, 6], notes[:, 7], tempos[:, 2], programs[:, 3], controls[:, 6]])
    end = max(int(to_grid(np.array([messages.end_tick]))[0]), int(grid_tick.max()) if len(grid_tick) else 0)
    kept = np.concatenate([np.ones(n, bool), ~closed, np.ones(len(rows) - 2 * n, bool)])  # no note_off of a closed note
    order = np.lexsort((message_index[kept], priority[kept], grid_tick[kept]))
    return frame_rows(rows[kept][order], grid_tick[kept][order], end)


def tempo_grid_ticks(ticks: np.ndarray, tempos: np.ndarray, ticks_per_quarter: int, ticks_per_beat: int) -> np.ndarray:
    """Grid ticks of tempo changes, each on the grid step just before or just after its exact place.

    Moving a tempo change by d steps moves everything after it by d * (tempo before - tempo after) in
    time: rounded independently, those errors add up over a song with many changes. Each change
    takes the side that brings the error summed so far closest to zero (error diffusion), so the error
    never grows past half a step at the largest tempo jump; the notes' own rounding is separate."""
    grid = np.zeros(len(ticks), np.int64)
    error, previous_tempo, previous_tick = 0.0, DEFAULT_TEMPO, 0  # error in (grid steps x us) / ticks_per_quarter
    for i, (tick, tempo) in enumerate(zip(np.asarray(ticks).tolist(), np.asarray(tempos).tolist())):
        floor, remainder = divmod(tick * ticks_per_beat, ticks_per_quarter)
        jump = previous_tempo - tempo
        choices = [(floor, -remainder * jump)] + ([(floor + 1, (ticks_per_quarter - remainder) * jump)] if remainder else [])
        choices = [c for c in choices if c[0] >= previous_tick] or choices[-1:]  # tempo changes keep their order
        grid[i], change = min(choices, key=lambda c: (abs(error + c[1]), -c[0] if 2 * remainder >= ticks_per_quarter else c[0]))
        error, previous_tempo, previous_tick = error + change, tempo, grid[i]
    return grid


def frame_rows(rows: np.ndarray, grid_tick: np.ndarray, end_tick: int) -> np.ndarray:
    """Rows at absolute grid ticks -> a song: START and END rows around them (END at end_tick), `time`
    holding the gaps, long gaps split into time_shift rows."""
    start, end = np.zeros((1, len(FIELDS)), np.int64), np.zeros((1, len(FIELDS)), np.int64)
    start[0, 0], end[0, 0] = START, END
    gaps = np.diff(np.concatenate([[0, 0], grid_tick, [end_tick]]))
    return with_time_shifts(np.concatenate([start, rows, end]), gaps).astype(np.int16)


def with_time_shifts(rows: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """The codec's framing: rows (none a time_shift) with `time` = gaps (>= 0), a gap longer than
    MAX_TIME_SHIFT written as time_shift rows of MAX_TIME_SHIFT before its row, which keeps 1..384."""
    gaps = np.asarray(gaps, np.int64)
    n_shifts = np.maximum(gaps - 1, 0) // MAX_TIME_SHIFT  # rows needed before each event
    out = np.zeros((len(rows) + int(n_shifts.sum()), rows.shape[1]), np.int64)
    position = np.arange(len(rows)) + np.cumsum(n_shifts)
    out[position] = rows
    out[position, COLUMN["time"]] = gaps - n_shifts * MAX_TIME_SHIFT
    is_shift = np.ones(len(out), bool)
    is_shift[position] = False
    out[is_shift, COLUMN["type"]] = TIME_SHIFT
    out[is_shift, COLUMN["time"]] = MAX_TIME_SHIFT
    return out


def stretch_durations(rows: np.ndarray, ticks: np.ndarray, factor: float) -> np.ndarray:
    """A copy of rows at grid ticks `ticks` whose note-on durations are stretched with a time stretch by
    `factor`: a note's end is stretched as a position (rounded to the grid, as its onset is); a note
    stretched past MAX_DURATION is cut to it."""
    rows = np.array(rows, np.int64)
    closed = (rows[:, TYPE] == NOTE_ON) & (rows[:, DURATION] != OPEN)
    onset = np.asarray(ticks, np.int64)[closed]
    length = np.rint((onset + rows[closed, DURATION] - 1) * factor).astype(np.int64) - np.rint(onset * factor).astype(np.int64)
    rows[closed, DURATION] = 1 + np.minimum(length, MAX_DURATION)
    return rows


def grid_ticks(events: np.ndarray) -> np.ndarray:
    """Absolute grid tick of every row."""
    return np.cumsum(np.asarray(events)[:, COLUMN["time"]].astype(np.int64))


# --- what the metrics and the store need ------------------------------------------------------


def note_partners(rows: np.ndarray) -> np.ndarray:
    """(T,) for each row: the note_off row that ends an OPEN note-on, the note-on row a note_off ends,
    -1 for none (a note still sounding at the last row, a note_off with nothing to end, any other row).
    The codec's rule: a note_off ends the earliest OPEN note sounding on its channel and pitch."""
    rows = np.asarray(rows, np.int64)
    open_on = (rows[:, TYPE] == NOTE_ON) & (rows[:, DURATION] == OPEN)  # a note-on with a duration ends by itself
    paired = np.nonzero(open_on | (rows[:, TYPE] == NOTE_OFF))[0]
    partner = match_first_in_first_out(rows[paired, CHANNEL] * 128 + rows[paired, NOTE], open_on[paired]).partner
    partners = np.full(len(rows), -1, np.int64)
    partners[paired] = np.where(partner >= 0, paired[partner], -1)
    return partners


def count_notes(events: np.ndarray) -> int:
    return int((np.asarray(events)[:, COLUMN["type"]] == NOTE_ON).sum())


def seconds_at(events: np.ndarray, ticks_per_beat: int = 96) -> np.ndarray:
    """Time in seconds of every row, following the tempo rows (MIDI's 120 BPM until the first)."""
    events = np.asarray(events)
    steps = events[:, COLUMN["time"]].astype(np.float64)
    tempo = np.full(len(events), float(DEFAULT_TEMPO))  # in force after each row
    tempo_rows = np.nonzero(events[:, COLUMN["type"]] == TEMPO)[0]
    if len(tempo_rows):
        index = np.searchsorted(tempo_rows, np.arange(len(events)), side="right") - 1
        tempo = np.where(index >= 0, tempo_of(events[tempo_rows])[np.maximum(index, 0)], DEFAULT_TEMPO)
    # The gap before row i is played at the tempo in force after row i - 1.
    tempo_during_gap = np.concatenate([[float(DEFAULT_TEMPO)], tempo[:-1]])
    return np.cumsum(steps / ticks_per_beat * tempo_during_gap / 1e6)


def seconds(events: np.ndarray, ticks_per_beat: int = 96) -> float:
    """Duration of a song in seconds (the time of its last row)."""
    return float(seconds_at(events, ticks_per_beat)[-1]) if len(events) else 0.0
