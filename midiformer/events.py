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
