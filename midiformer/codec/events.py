"""The codec: a MIDI file <-> a sequence of events, one row of integer fields per event.

Public API: FIELDS, VOCAB, TYPES, encode, decode (plus helpers the loss and generation need).

Each row is (type, time, channel, instrument, note, velocity); the field order is the order in which
a cascade head chooses them (the channel decides which notes are sounding, so it comes before note).

    type        what applies (other fields hold 0 and are masked in the loss)
    start       time=0                       first row of every song
    end         time                         last row; time = gap to the end of the song
    note_on     time channel instrument note velocity   instrument = the channel's program
    note_off    time channel note
    program     time channel instrument      a program change
    tempo       time note velocity           tempo as a 14-bit log-BPM bin: note = high 7 bits, velocity = low 7
    time_shift  time                         a gap longer than MAX_TIME_SHIFT is split into these rows

`time` is the gap since the previous row in grid steps (`ticks_per_beat` steps per quarter note).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FIELDS = ("type", "time", "channel", "instrument", "note", "velocity")
COLUMN = {name: i for i, name in enumerate(FIELDS)}

TYPES = ("start", "end", "note_on", "note_off", "program", "tempo", "time_shift")
START, END, NOTE_ON, NOTE_OFF, PROGRAM, TEMPO, TIME_SHIFT = range(len(TYPES))

MAX_TIME_SHIFT = 384  # grid steps a single row can carry: one 4/4 bar at 96 steps per beat
VOCAB = {"type": len(TYPES), "time": MAX_TIME_SHIFT + 1, "channel": 16, "instrument": 128, "note": 128, "velocity": 128}
DRUM_CHANNEL = 9  # General MIDI channel 10

# APPLIES[type, field]: does the field carry information for this event type? Masked in the loss where not.
_APPLIES_BY_TYPE = {
    START: ("type", "time"),
    END: ("type", "time"),
    NOTE_ON: FIELDS,
    NOTE_OFF: ("type", "time", "channel", "note"),
    PROGRAM: ("type", "time", "channel", "instrument"),
    TEMPO: ("type", "time", "note", "velocity"),
    TIME_SHIFT: ("type", "time"),
}
APPLIES = np.array([[f in _APPLIES_BY_TYPE[t] for f in FIELDS] for t in range(len(TYPES))], dtype=bool)

IGNORE = -100  # torch.nn.functional.cross_entropy's ignore_index: a target that does not count

# Tempo: 14-bit log scale from 8 to 1024 BPM, 0.03% per bin, so decoded files play at the original speed.
TEMPO_MIN_BPM, TEMPO_MAX_BPM, TEMPO_BINS = 8.0, 1024.0, 128 * 128

CODEC_VERSION = "2"  # bump when encode's output changes: prepared stores are keyed by it

from midiformer.codec import midi  # noqa: E402
from midiformer.codec.midi import MidiError  # noqa: E402, F401  (re-exported: the codec's one error type)

# --- tempo ------------------------------------------------------------------------------------


def tempo_to_bin(microseconds_per_quarter: np.ndarray | int) -> np.ndarray:
    bpm = 60e6 / np.maximum(np.asarray(microseconds_per_quarter, dtype=np.float64), 1.0)
    position = np.log(bpm / TEMPO_MIN_BPM) / math.log(TEMPO_MAX_BPM / TEMPO_MIN_BPM)
    return np.clip(np.round(position * (TEMPO_BINS - 1)), 0, TEMPO_BINS - 1).astype(np.int64)


def bin_to_bpm(tempo_bin: np.ndarray | int) -> np.ndarray:
    position = np.asarray(tempo_bin, dtype=np.float64) / (TEMPO_BINS - 1)
    return TEMPO_MIN_BPM * (TEMPO_MAX_BPM / TEMPO_MIN_BPM) ** position


# --- encode -----------------------------------------------------------------------------------

# At one grid tick, rows go in this order so that decoding pairs every note-off with its own note:
# an ending note frees its pitch before a new one starts, and a note of zero length (on and off on
# the same tick) is closed only after it has started. Program changes and note-ons share a rank and
# keep the file's order, so every note-on's instrument is its channel's program in the event stream
# (a rule the grammar-masked likelihood relies on: the instrument of a note-on costs no bits).
_OFF, _TEMPO, _ON, _ZERO_LENGTH_OFF = range(4)
_PROGRAM = _ON


def encode(path: str | Path, ticks_per_beat: int = 96) -> np.ndarray:
    """Events of a MIDI file: int16 array of shape (n_events, len(FIELDS))."""
    return encode_song(path, ticks_per_beat)[0]


def encode_song(path: str | Path, ticks_per_beat: int = 96) -> tuple[np.ndarray, dict[str, int]]:
    """Events of a MIDI file plus counts of what the codec met (and how it dealt with it)."""
    messages = midi.read_midi(path)
    notes, programs, stats = pair_notes(messages)
    return notes_to_events(notes, programs, messages, ticks_per_beat), stats


def pair_notes(messages: midi.MidiMessages) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Notes as rows (onset, offset, channel, pitch, velocity, program, onset message, offset message)
    in file ticks; the last two are indices into `messages` (the file's order, which breaks ties of tick).

    A note-off ends the earliest sounding note of its channel and pitch (first in, first out);
    a note-off with nothing sounding is ignored; a note still sounding at the end of the song is
    ended there. Program changes come back as rows (tick, channel, program, message).
    """
    program = [0] * 16
    sounding: dict[int, list[tuple[int, int, int]]] = {}
    notes, programs = [], []
    stats = {"orphan_note_offs": 0, "unterminated_notes": 0, "overlapping_notes": 0}
    columns = (messages.tick.tolist(), messages.kind.tolist(), messages.channel.tolist(),
               messages.data1.tolist(), messages.data2.tolist())
    for index, (tick, kind, channel, data1, data2) in enumerate(zip(*columns)):
        if kind == midi.NOTE_ON:
            queue = sounding.setdefault(channel * 128 + data1, [])
            stats["overlapping_notes"] += bool(queue)
            queue.append((tick, data2, program[channel], index))
        elif kind == midi.NOTE_OFF:
            queue = sounding.get(channel * 128 + data1)
            if queue:
                onset, velocity, instrument, onset_index = queue.pop(0)
                notes.append((onset, tick, channel, data1, velocity, instrument, onset_index, index))
            else:
                stats["orphan_note_offs"] += 1
        elif kind == midi.PROGRAM_CHANGE:
            program[channel] = data1
            programs.append((tick, channel, data1, index))
    for key, queue in sounding.items():
        for onset, velocity, instrument, onset_index in queue:
            notes.append((onset, messages.end_tick, key // 128, key % 128, velocity, instrument, onset_index,
                          len(messages.tick)))
            stats["unterminated_notes"] += 1
    notes_array = np.array(notes, dtype=np.int64).reshape(-1, 8)
    stats["notes"] = len(notes_array)
    stats["tempo_changes"] = int((messages.kind == midi.TEMPO).sum())
    stats["program_changes"] = len(programs)
    return notes_array, np.array(programs, dtype=np.int64).reshape(-1, 4), stats


def notes_to_events(notes: np.ndarray, programs: np.ndarray, messages: midi.MidiMessages,
                    ticks_per_beat: int) -> np.ndarray:
    def to_grid(ticks: np.ndarray) -> np.ndarray:  # round half up, in integers: exact and stable
        return (2 * np.asarray(ticks, np.int64) * ticks_per_beat + messages.ticks_per_quarter) // (
            2 * messages.ticks_per_quarter)

    onset, offset = to_grid(notes[:, 0]), to_grid(notes[:, 1])
    is_tempo = messages.kind == midi.TEMPO
    tempo_bin = tempo_to_bin(messages.data1[is_tempo])
    n_notes, n_tempo, n_programs = len(notes), int(is_tempo.sum()), len(programs)

    rows = np.zeros((2 * n_notes + n_tempo + n_programs, len(FIELDS)), dtype=np.int64)
    grid_tick = np.concatenate([onset, offset, to_grid(messages.tick[is_tempo]), to_grid(programs[:, 0])])
    priority = np.concatenate([np.full(n_notes, _ON), np.where(offset > onset, _OFF, _ZERO_LENGTH_OFF),
                               np.full(n_tempo, _TEMPO), np.full(n_programs, _PROGRAM)])
    type_, channel, instrument, note, velocity = (rows[:, COLUMN[f]] for f in
                                                  ("type", "channel", "instrument", "note", "velocity"))
    notes_part, offs_part = slice(0, n_notes), slice(n_notes, 2 * n_notes)
    tempo_part, program_part = slice(2 * n_notes, 2 * n_notes + n_tempo), slice(2 * n_notes + n_tempo, None)
    type_[notes_part], type_[offs_part], type_[tempo_part], type_[program_part] = NOTE_ON, NOTE_OFF, TEMPO, PROGRAM
    channel[notes_part] = channel[offs_part] = notes[:, 2]
    note[notes_part] = note[offs_part] = notes[:, 3]
    velocity[notes_part], instrument[notes_part] = notes[:, 4], notes[:, 5]
    note[tempo_part], velocity[tempo_part] = tempo_bin >> 7, tempo_bin & 127
    channel[program_part], instrument[program_part] = programs[:, 1], programs[:, 2]

    # Sort by grid tick, then priority, then the file's message order.
    message_index = np.concatenate([notes[:, 6], notes[:, 7], np.flatnonzero(is_tempo), programs[:, 3]])
    order = np.lexsort((message_index, priority, grid_tick))
    rows, grid_tick = rows[order], grid_tick[order]
    end = max(int(to_grid(np.array([messages.end_tick]))[0]), int(grid_tick[-1]) if len(grid_tick) else 0)
    return frame_rows(rows, grid_tick, end)


def frame_rows(rows: np.ndarray, grid_tick: np.ndarray, end_tick: int) -> np.ndarray:
    """Rows at absolute grid ticks -> a song: START and END rows around them (END at end_tick), `time`
    holding the gaps, long gaps split into time_shift rows."""
    start, end = np.zeros((1, len(FIELDS)), np.int64), np.zeros((1, len(FIELDS)), np.int64)
    start[0, 0], end[0, 0] = START, END
    rows = np.concatenate([start, rows, end])
    gaps = np.diff(np.concatenate([[0, 0], grid_tick, [end_tick]]))
    n_shifts = np.maximum(gaps - 1, 0) // MAX_TIME_SHIFT  # rows needed before each event
    out = np.zeros((len(rows) + int(n_shifts.sum()), len(FIELDS)), np.int64)
    position = np.arange(len(rows)) + np.cumsum(n_shifts)
    out[position] = rows
    out[position, COLUMN["time"]] = gaps - n_shifts * MAX_TIME_SHIFT
    is_shift = np.ones(len(out), bool)
    is_shift[position] = False
    out[is_shift, COLUMN["type"]] = TIME_SHIFT
    out[is_shift, COLUMN["time"]] = MAX_TIME_SHIFT
    return out.astype(np.int16)


# --- decode -----------------------------------------------------------------------------------


def grid_ticks(events: np.ndarray) -> np.ndarray:
    """Absolute grid tick of every row."""
    return np.cumsum(np.asarray(events)[:, COLUMN["time"]].astype(np.int64))


def decode(events: np.ndarray, path: str | Path, ticks_per_beat: int = 96) -> None:
    """Write events as a format-1 MIDI file: a tempo track, then one track per channel.

    A note-on whose instrument differs from its channel's current program is preceded by a program
    change; a note-off with nothing sounding is dropped; notes still sounding at the end are ended.
    """
    events = np.asarray(events)
    ticks = grid_ticks(events)
    tempo_track: list[tuple[int, bytes]] = []
    channel_tracks: dict[int, list[tuple[int, bytes]]] = {}
    program = [0] * 16
    sounding = np.zeros((16, 128), np.int64)
    for tick, (type_, _time, channel, instrument, note, velocity) in zip(ticks.tolist(), events.tolist()):
        track = channel_tracks.setdefault(channel, []) if type_ in (NOTE_ON, NOTE_OFF, PROGRAM) else None
        if type_ == TEMPO:
            bpm = float(bin_to_bpm((note << 7) | velocity))
            tempo_track.append((tick, midi.tempo(round(60e6 / bpm))))
        elif type_ == PROGRAM or (type_ == NOTE_ON and instrument != program[channel]):
            track.append((tick, midi.program_change(channel, instrument)))
            program[channel] = instrument
        if type_ == NOTE_ON:
            track.append((tick, midi.note_on(channel, note, max(velocity, 1))))
            sounding[channel, note] += 1
        elif type_ == NOTE_OFF and sounding[channel, note]:
            track.append((tick, midi.note_off(channel, note)))
            sounding[channel, note] -= 1
        elif type_ == END:
            break
    end = int(ticks[-1]) if len(ticks) else 0
    for channel, note in zip(*np.nonzero(sounding)):
        channel_tracks[int(channel)].extend([(end, midi.note_off(int(channel), int(note)))] * sounding[channel, note])
    tracks = [midi.track_chunk(tempo_track, name="midiformer")]
    tracks += [midi.track_chunk(channel_tracks[c]) for c in sorted(channel_tracks)]
    midi.write_midi(path, ticks_per_beat, tracks)


# --- what the metrics and the store need ------------------------------------------------------


def count_notes(events: np.ndarray) -> int:
    return int((np.asarray(events)[:, COLUMN["type"]] == NOTE_ON).sum())


def seconds(events: np.ndarray, ticks_per_beat: int = 96) -> float:
    """Duration of a song in seconds, following its tempo rows (120 BPM until the first)."""
    events = np.asarray(events)
    steps = events[:, COLUMN["time"]].astype(np.float64)
    is_tempo = events[:, COLUMN["type"]] == TEMPO
    bpm_after = np.full(len(events), 120.0)
    tempo_rows = np.nonzero(is_tempo)[0]
    if len(tempo_rows):
        bins = (events[tempo_rows, COLUMN["note"]].astype(np.int64) << 7) | events[tempo_rows, COLUMN["velocity"]]
        index = np.searchsorted(tempo_rows, np.arange(len(events)), side="right") - 1
        bpm_after = np.where(index >= 0, bin_to_bpm(bins)[np.maximum(index, 0)], 120.0)
    # The gap before row i is played at the tempo in force after row i - 1.
    bpm_during_gap = np.concatenate([[120.0], bpm_after[:-1]])
    return float((steps / ticks_per_beat * 60.0 / bpm_during_gap).sum())
