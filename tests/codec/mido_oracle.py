"""An independent reading of a MIDI file with mido, to check the codec against.

Times come in beats (ticks / ticks per quarter note) and in seconds, which mido's reading is
followed here by the file's own tempo map: a tempo event from any track holds from its tick on.
"""
from __future__ import annotations

from collections import defaultdict, deque

import mido


def read(path):
    """{"notes": {(channel, pitch): [(onset_beats, offset_beats, channel, pitch, velocity, program,
    onset_s, offset_s)]} in note-on order, paired first-in-first-out; "tempos": [(beats, seconds, us)];
    "controls": {(channel, controller): [(beats, seconds, value)]}; "bends": {channel: [(beats, seconds, value)]}}."""
    midi_file = mido.MidiFile(path)
    tpq = midi_file.ticks_per_beat
    tick, now, tempo = 0, 0.0, 500_000
    end = max((sum(message.time for message in track) for track in midi_file.tracks), default=0)
    program = [0] * 16
    sounding = defaultdict(deque)
    notes, controls, bends = defaultdict(list), defaultdict(list), defaultdict(list)
    tempos = []
    # merge_tracks keeps track order among simultaneous messages, as the codec's reader does
    for message in mido.merge_tracks(midi_file.tracks):
        tick += message.time
        now += message.time * tempo / tpq / 1e6
        beats = tick / tpq
        if message.type == "set_tempo":
            tempo = message.tempo
            tempos.append((beats, now, message.tempo))
        elif message.type == "program_change":
            program[message.channel] = message.program
        elif message.type == "control_change":
            controls[message.channel, message.control].append((beats, now, message.value))
        elif message.type == "pitchwheel":
            bends[message.channel].append((beats, now, message.pitch + 8192))  # mido centres it on 0
        elif message.type == "note_on" and message.velocity > 0:
            key = (message.channel, message.note)
            note = [beats, None, message.channel, message.note, message.velocity, program[message.channel], now, None]
            notes[key].append(note)
            sounding[key].append(note)
        elif message.type in ("note_off", "note_on"):
            key = (message.channel, message.note)
            if sounding[key]:
                note = sounding[key].popleft()
                note[1], note[7] = beats, now
    end_seconds = now + (end - tick) * tempo / tpq / 1e6
    for queue in sounding.values():
        for note in queue:
            note[1], note[7] = end / tpq, end_seconds
    return {"notes": {key: [tuple(n) for n in group] for key, group in notes.items()}, "tempos": tempos,
            "controls": dict(controls), "bends": dict(bends)}


def notes_and_tempos(path):
    """Notes (onset_beats, offset_beats, channel, pitch, velocity, program) by (channel, pitch), and
    tempos as (beats, bpm)."""
    reading = read(path)
    notes = {key: [n[:6] for n in group] for key, group in reading["notes"].items()}
    return notes, [(beats, mido.tempo2bpm(us)) for beats, _seconds, us in reading["tempos"]]


def changes(timeline):
    """The entries of a (beats, seconds, value) timeline that change the value (a repeat changes nothing)."""
    kept = []
    for entry in timeline:
        if not kept or entry[2] != kept[-1][2]:
            kept.append(entry)
    return kept
