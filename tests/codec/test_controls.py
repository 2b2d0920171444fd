"""The performance controls: sustain pedal, control changes and pitch bends carried exactly (or dropped
and counted), bad values refused in one line, and the codec settings checked."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from midiformer.codec import events, grammar
from midiformer.common import ConfigError
from tests.codec import mido_oracle
from tests.codec.test_oddities import column, raw_file
from tests.codec.test_roundtrip import HALF_STEP, assert_same_music, roundtrip
from tests.conftest import DEV_DATA

POP909, GROOVE, OPENMSX = DEV_DATA / "pop909", DEV_DATA / "groove", DEV_DATA / "openmsx"
SUSTAIN = 64


def test_sustain_pedal_of_a_piano_performance(tmp_path):
    path = POP909 / "pop909_001.mid"  # POP909's PIANO track is played with the sustain pedal
    pedal = {key: line for key, line in mido_oracle.read(path)["controls"].items() if key[1] == SUSTAIN}
    assert pedal and sum(len(mido_oracle.changes(line)) for line in pedal.values()) > 50
    rows = events.encode(path)
    control_rows = rows[rows[:, 0] == events.CONTROL]
    assert set(column(control_rows, "instrument").tolist()) <= set(events.DEFAULT_CONTROLS)
    decoded = roundtrip(path, tmp_path)
    assert_same_music(path, decoded)
    back = mido_oracle.read(decoded)["controls"]
    for key, line in pedal.items():  # every pedal change on its channel, same value, same beat +- half a step
        got = back[key]
        assert [v for *_, v in got] == [v for *_, v in mido_oracle.changes(line)]


def continuous_pedal_performance(path, minutes=2.0):
    """A pianist's file: 480 ticks per quarter, one tempo, notes held by a half-pedalled sustain
    (values sweeping 0..127), sostenuto and soft pedal, and a pitch bend sweep on another channel."""
    song = mido.MidiFile(ticks_per_beat=480)
    piano, synth = mido.MidiTrack(), mido.MidiTrack()
    song.tracks += [piano, synth]
    piano.append(mido.MetaMessage("set_tempo", tempo=652_174, time=0))  # 92 BPM: no round number of anything
    rng = np.random.default_rng(0)
    beats = int(minutes * 92)
    for beat in range(beats):
        piano.append(mido.Message("note_on", note=int(rng.integers(40, 90)), velocity=int(rng.integers(20, 110)), time=0))
        for value in (0, 37, 64, 90, 127):  # a pedal sweep within the beat, 96 ticks apart
            piano.append(mido.Message("control_change", control=SUSTAIN, value=value, time=0 if value == 0 else 96))
        piano.append(mido.Message("control_change", control=66 + beat % 2, value=127 * (beat % 3 == 0), time=0))
        piano.append(mido.Message("note_off", note=piano[-7].note, time=96))
    for step in range(beats * 4):
        synth.append(mido.Message("pitchwheel", channel=3, pitch=int(8191 * np.sin(step / 7)), time=0 if step == 0 else 120))
    song.save(path)
    return path


def test_continuous_pedals_and_bends_keep_every_value(tmp_path):
    path = continuous_pedal_performance(tmp_path / "pedals.mid")
    rows, stats = events.encode_song(path)
    assert stats["dropped_controls"] == 0 and stats["dropped_pitch_bends"] == 0
    bends = rows[rows[:, 0] == events.PITCH_BEND]
    assert len(bends) > 500 and len(set(((bends[:, 4] << 7) | bends[:, 5]).tolist())) > 100
    assert_same_music(path, roundtrip(path, tmp_path))


def test_pitch_bends_of_a_real_file(tmp_path):
    path = next(p for p in sorted(OPENMSX.glob("*.mid")) if mido_oracle.read(p)["bends"])
    original = mido_oracle.read(path)["bends"]
    decoded = mido_oracle.read(roundtrip(path, tmp_path))["bends"]
    for channel, line in original.items():
        want = mido_oracle.changes(line)
        assert [v for *_, v in decoded[channel]] == [v for *_, v in want]
        assert max(abs(a[0] - b[0]) for a, b in zip(want, decoded[channel])) <= HALF_STEP


def test_controllers_not_carried_are_dropped_and_counted(tmp_path):
    path = sorted(GROOVE.glob("*.mid"))[0]  # Groove's hi-hat pedal is CC4, not carried by default
    hihat = sum(len(line) for (_, number), line in mido_oracle.read(path)["controls"].items() if number == 4)
    assert hihat > 0
    rows, stats = events.encode_song(path)
    assert stats["dropped_controls"] >= hihat and events.CONTROL not in rows[:, 0]
    with_hihat, stats = events.encode_song(path, controls=[4])
    assert stats["dropped_controls"] == 0
    carried = with_hihat[with_hihat[:, 0] == events.CONTROL]
    assert len(carried) + stats["repeated_controls"] == hihat and set(carried[:, 3].tolist()) == {4}


def test_no_controls_gives_the_seed_seven_types(tmp_path):
    path = POP909 / "pop909_001.mid"
    seed, stats = events.encode_song(path, controls=[], pitch_bend=False)
    full = events.encode(path)
    assert set(events.TYPES[t] for t in np.unique(seed[:, 0])) <= set(events.SEED_TYPES)
    assert events.CONTROL in full[:, 0] and stats["dropped_controls"] > 0
    grammar.check(seed, song=True, controls=[], pitch_bend=False)
    notes = lambda rows: rows[np.isin(rows[:, 0], (events.NOTE_ON, events.NOTE_OFF))]  # noqa: E731
    np.testing.assert_array_equal(notes(seed)[:, 2:], notes(full)[:, 2:])  # the same notes in the same order
    assert events.grid_ticks(seed)[-1] == events.grid_ticks(full)[-1]


def test_repeated_values_are_dropped_and_counted(tmp_path):
    body = bytes([0x00, 0xB0, 64, 127, 0x10, 0xB0, 64, 127, 0x10, 0x90, 60, 90, 0x10, 0xB0, 64, 0,
                  0x00, 0x80, 60, 0]) + b"\x00\xff\x2f\x00"
    rows, stats = events.encode_song(raw_file(tmp_path / "repeat.mid", 96, body))
    assert column(rows, "velocity", events.CONTROL).tolist() == [127, 0] and stats["repeated_controls"] == 1


def test_a_control_value_out_of_range_is_refused_in_one_line(tmp_path):
    body = bytes([0x00, 0x90, 60, 90, 0x10, 0xB0, 64, 0xC8, 0x10, 0x80, 60, 0]) + b"\x00\xff\x2f\x00"
    path = raw_file(tmp_path / "bad_pedal.mid", 96, body)
    with pytest.raises(events.MidiError, match="control change 64 on channel 0 at tick 16 has value 200") as error:
        events.encode(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("settings, option", [
    (dict(controls=[64, 123]), "channel mode"),
    (dict(controls=[64, 64]), "twice"),
    (dict(controls="64"), "list of controller numbers"),
    (dict(controls=[128]), "not a controller number"),
    (dict(pitch_bend="yes"), "pitch_bend"),
    (dict(ticks_per_beat=0), "ticks_per_beat"),
])
def test_bad_codec_settings_are_refused(settings, option):
    with pytest.raises(ConfigError, match=option) as error:
        events.encode(POP909 / "pop909_001.mid", **settings)
    assert "data.codec." in str(error.value)


def test_the_store_key_settings_are_one_form():
    assert events.codec_settings(controls=[67, 64]) == events.codec_settings(controls=(64, 67))
    assert events.codec_settings() == {"ticks_per_beat": 96, "controls": sorted(events.DEFAULT_CONTROLS),
                                       "pitch_bend": True, "durations": True}
