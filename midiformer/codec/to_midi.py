"""Events back to a Standard MIDI File: the inverse of events.encode (every note the codec kept,
at its grid tick; docs/codec.md). Any rows may be decoded, also a model's, which may break the
grammar: what cannot be played is dropped or mended as each case below says.

    from midiformer.codec.to_midi import decode
    decode(rows, "song.mid", ticks_per_beat=96)
"""
from __future__ import annotations

import heapq
from pathlib import Path

import numpy as np

from midiformer.codec import midi
from midiformer.codec.events import (
    CONTROL,
    END,
    NOTE_OFF,
    NOTE_ON,
    OPEN,
    PITCH_BEND,
    PROGRAM,
    TEMPO,
    grid_ticks,
    tempo_of,
)


def decode(events: np.ndarray, path: str | Path, ticks_per_beat: int = 96) -> None:
    """Write events as a format-1 MIDI file: a tempo track, then one track per channel.

    A note-on whose instrument differs from its channel's current program is preceded by a program
    change (the codec never writes one, a model may); a note-off with no OPEN note sounding is dropped;
    notes still sounding at the end are ended.
    """
    events = np.asarray(events)
    ticks = grid_ticks(events)
    tempo_track: list[tuple[int, bytes]] = []
    channel_tracks: dict[int, list[tuple[int, bytes]]] = {}
    program = [0] * 16
    sounding = np.zeros((16, 128), np.int64)  # OPEN notes: a note_off row ends them
    ending = NoteEnds()  # notes with a duration
    on_a_channel = (NOTE_ON, NOTE_OFF, PROGRAM, CONTROL, PITCH_BEND)
    for tick, row in zip(ticks.tolist(), events.tolist()):
        type_, _time, channel, instrument, note, velocity, duration = row
        for end_tick, end_channel, end_note in ending.due(tick):
            channel_tracks[end_channel].append((end_tick, midi.note_off(end_channel, end_note)))
        track = channel_tracks.setdefault(channel, []) if type_ in on_a_channel else None
        if type_ == TEMPO:
            tempo_track.append((tick, midi.tempo(int(tempo_of(np.array(row))))))
        elif type_ == CONTROL:
            track.append((tick, midi.control_change(channel, instrument, velocity)))
        elif type_ == PITCH_BEND:
            track.append((tick, midi.pitch_bend(channel, (note << 7) | velocity)))
        elif type_ == PROGRAM or (type_ == NOTE_ON and instrument != program[channel]):
            track.append((tick, midi.program_change(channel, instrument)))
            program[channel] = instrument
        if type_ == NOTE_ON:
            track.append((tick, midi.note_on(channel, note, max(velocity, 1))))
            if duration == OPEN:
                sounding[channel, note] += 1
            else:
                ending.add(tick, tick + duration - 1, channel, note)
        elif type_ == NOTE_OFF and sounding[channel, note]:
            track.append((tick, midi.note_off(channel, note)))
            sounding[channel, note] -= 1
        elif type_ == END:
            break
    end = int(ticks[-1]) if len(ticks) else 0
    for end_tick, channel, note in ending.due(None):
        channel_tracks[channel].append((min(end_tick, end), midi.note_off(channel, note)))
    for channel, note in zip(*np.nonzero(sounding)):
        channel_tracks[int(channel)].extend([(end, midi.note_off(int(channel), int(note)))] * sounding[channel, note])
    tracks = [midi.track_chunk(tempo_track, name="midiformer")]
    tracks += [midi.track_chunk(channel_tracks[c]) for c in sorted(channel_tracks)]
    midi.write_midi(path, ticks_per_beat, tracks)


class NoteEnds:
    """The ends of notes that carry their duration, handed out in time order where encode put their
    note_off rows: a note that ends at tick t ends before the rows at t, one of length 0 after them."""

    def __init__(self):
        self.heap: list[tuple[int, int, int, int, int]] = []  # (end tick, onset tick, order added, channel, note)
        self.added = 0

    def add(self, onset: int, end: int, channel: int, note: int) -> None:
        heapq.heappush(self.heap, (end, onset, self.added, channel, note))
        self.added += 1

    def due(self, tick: int | None) -> list[tuple[int, int, int]]:
        """(end tick, channel, note) of the notes that end before a row at `tick` (None: all of them)."""
        out = []
        while self.heap and (tick is None or self.heap[0][0] < tick or (self.heap[0][0] == tick and self.heap[0][1] < tick)):
            end, _onset, _order, channel, note = heapq.heappop(self.heap)
            out.append((end, channel, note))
        return out
