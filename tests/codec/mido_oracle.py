"""An independent reading of a MIDI file with mido, to check the codec against."""
from __future__ import annotations

from collections import defaultdict, deque

import mido


def notes_and_tempos(path):
    """Notes (onset_beats, offset_beats, channel, pitch, velocity, program) grouped by (channel, pitch)
    in note-on order, paired first-in-first-out; tempos as (beats, bpm); plus the drum channels used."""
    midi_file = mido.MidiFile(path)
    tpq = midi_file.ticks_per_beat
    tick, end = 0, 0
    program = [0] * 16
    sounding = defaultdict(deque)
    notes = defaultdict(list)
    tempos = []
    # merge_tracks keeps track order among simultaneous messages, as the codec's reader does
    for track in midi_file.tracks:
        end = max(end, sum(message.time for message in track))
    for message in mido.merge_tracks(midi_file.tracks):
        tick += message.time
        if message.type == "set_tempo":
            tempos.append((tick / tpq, mido.tempo2bpm(message.tempo)))
        elif message.type == "program_change":
            program[message.channel] = message.program
        elif message.type == "note_on" and message.velocity > 0:
            key = (message.channel, message.note)
            note = [tick / tpq, None, message.channel, message.note, message.velocity, program[message.channel]]
            notes[key].append(note)
            sounding[key].append(note)
        elif message.type in ("note_off", "note_on"):
            key = (message.channel, message.note)
            if sounding[key]:
                sounding[key].popleft()[1] = tick / tpq
    for queue in sounding.values():
        for note in queue:
            note[1] = end / tpq
    return {key: [tuple(n) for n in group] for key, group in notes.items()}, tempos
