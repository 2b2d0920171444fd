"""Each oddity the data README lists, checked on the file that has it or on a file made here."""
from __future__ import annotations

import struct

import mido
import pytest

from midiformer.codec import events, midi
from midiformer.codec.events import COLUMN
from tests.codec.test_roundtrip import assert_same_music, roundtrip
from tests.conftest import DEV_DATA

OPENMSX, POP909, GROOVE, BLUPI = (DEV_DATA / d for d in ("openmsx", "pop909", "groove", "planetblupi"))


def column(rows, name, type_=None):
    rows = rows if type_ is None else rows[rows[:, COLUMN["type"]] == type_]
    return rows[:, COLUMN[name]]


def raw_file(path, ticks_per_quarter, *track_bodies):
    chunks = b"".join(b"MTrk" + struct.pack(">I", len(body)) + body for body in track_bodies)
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 1, len(track_bodies), ticks_per_quarter) + chunks)
    return path


@pytest.mark.parametrize("ticks_per_quarter", [89, 1024])
def test_unusual_ticks_per_quarter(tmp_path, ticks_per_quarter):
    song = mido.MidiFile(ticks_per_beat=ticks_per_quarter)
    track = mido.MidiTrack()
    song.tracks.append(track)
    for i, pitch in enumerate([60, 64, 67, 72]):
        track.append(mido.Message("note_on", note=pitch, velocity=40 + i, time=7 * i + 3))
        track.append(mido.Message("note_off", note=pitch, time=ticks_per_quarter // 3 + i))
    song.save(tmp_path / "odd.mid")
    assert_same_music(tmp_path / "odd.mid", roundtrip(tmp_path / "odd.mid", tmp_path))


def test_running_status_and_velocity_zero_note_offs(tmp_path):
    # One status byte 0x91, then four messages in running status; velocity 0 ends a note.
    body = bytes([0x00, 0x91, 60, 100, 0x10, 64, 90, 0x20, 60, 0, 0x08, 64, 0]) + b"\x00\xff\x2f\x00"
    path = raw_file(tmp_path / "running.mid", 96, body)
    rows = events.encode(path)
    assert column(rows, "note", events.NOTE_ON).tolist() == [60, 64]
    assert column(rows, "velocity", events.NOTE_ON).tolist() == [100, 90]
    assert column(rows, "channel", events.NOTE_ON).tolist() == [1, 1]
    assert column(rows, "duration", events.NOTE_ON).tolist() == [1 + 48, 1 + 40]  # ended by the velocity-0 note-ons
    assert column(rows, "note", events.NOTE_OFF).tolist() == []
    assert column(events.encode(path, durations=False), "note", events.NOTE_OFF).tolist() == [60, 64]
    assert_same_music(path, roundtrip(path, tmp_path))


def test_velocity_zero_note_offs_in_real_files(tmp_path):
    path = POP909 / "pop909_001.mid"
    raw = mido.MidiFile(path)
    assert any(m.type == "note_on" and m.velocity == 0 for t in raw.tracks for m in t)
    assert_same_music(path, roundtrip(path, tmp_path))


def test_overlapping_same_pitch_notes_are_kept(tmp_path):
    path = BLUPI / "planetblupi_music004.mid"  # pretty_midi loses 22 notes of this file
    rows, stats = events.encode_song(path)
    assert stats["overlapping_notes"] > 0
    assert stats["notes"] == events.count_notes(rows)
    assert_same_music(path, roundtrip(path, tmp_path))


def test_zero_length_drum_hits_are_kept(tmp_path):
    zero_length = 0
    for path in sorted(GROOVE.glob("*.mid"))[:40]:
        rows = events.encode(path)
        ticks = events.grid_ticks(rows)
        zero_length += int((column(rows, "duration", events.NOTE_ON) == 1 + 0).sum())  # 1 + a length of 0
        assert (column(rows, "channel", events.NOTE_ON) == events.DRUM_CHANNEL).all(), path
        assert ticks[-1] >= ticks[:-1].max()
    assert zero_length > 0


def test_many_tempo_changes_are_kept(tmp_path):
    path = OPENMSX / "midnight_snow_run.mid"
    rows, stats = events.encode_song(path)
    set_tempos = [m.tempo for t in mido.MidiFile(path).tracks for m in t if m.type == "set_tempo"]
    assert len(set(set_tempos)) == 31  # the data README's count of distinct tempos
    assert stats["tempo_changes"] == (column(rows, "type") == events.TEMPO).sum() == len(set_tempos)
    decoded = roundtrip(path, tmp_path)
    assert_same_music(path, decoded)
    assert mido.MidiFile(decoded).length == pytest.approx(mido.MidiFile(path).length, rel=1e-3)
    assert events.seconds(rows) == pytest.approx(mido.MidiFile(path).length, rel=1e-2)


def test_no_tempo_event_plays_at_120_bpm():
    path = OPENMSX / "ttsong_iii_imuh3.mid"
    rows = events.encode(path)
    assert (column(rows, "type") == events.TEMPO).sum() == 0
    assert events.seconds(rows) == pytest.approx(mido.MidiFile(path).length, rel=1e-2)


def test_program_change_mid_song(tmp_path):
    path = OPENMSX / "tttheme2.mid"
    rows = events.encode(path)
    programs_by_channel = {}
    for channel, program in zip(column(rows, "channel", events.NOTE_ON), column(rows, "instrument", events.NOTE_ON)):
        programs_by_channel.setdefault(int(channel), set()).add(int(program))
    assert any(len(p) > 1 for p in programs_by_channel.values()), "a channel changes instrument mid-song"
    assert_same_music(path, roundtrip(path, tmp_path))


def test_drums_stay_on_channel_10(tmp_path):
    path = OPENMSX / "careless_perc_redfarn.mid"
    decoded = roundtrip(path, tmp_path)
    drum_notes = [m for t in mido.MidiFile(decoded).tracks for m in t if m.type == "note_on" and m.channel == 9]
    assert drum_notes


def test_unterminated_note_is_counted_and_kept():
    rows, stats = events.encode_song(OPENMSX / "chuggachugga.mid")
    assert stats["unterminated_notes"] == 1
    assert stats["notes"] == events.count_notes(rows)


def test_orphan_note_offs_are_counted():
    total = sum(events.encode_song(p)[1]["orphan_note_offs"] for p in sorted(OPENMSX.glob("*.mid")))
    assert total > 0


def test_long_gaps_become_time_shift_rows(tmp_path):
    song = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    song.tracks.append(track)
    track.append(mido.Message("note_on", note=60, velocity=64, time=0))
    track.append(mido.Message("note_off", note=60, time=480))
    track.append(mido.Message("note_on", note=62, velocity=64, time=480 * 10))  # ten beats of silence
    track.append(mido.Message("note_off", note=62, time=480))
    song.save(tmp_path / "gap.mid")
    rows = events.encode(tmp_path / "gap.mid")
    assert column(rows, "time").max() <= events.MAX_TIME_SHIFT
    assert (column(rows, "type") == events.TIME_SHIFT).sum() == 2  # 960 steps = 384 + 384 + 192
    assert events.grid_ticks(rows)[column(rows, "type") == events.NOTE_ON].tolist() == [0, 11 * 96]
    assert_same_music(tmp_path / "gap.mid", roundtrip(tmp_path / "gap.mid", tmp_path))


def test_every_value_fits_its_vocabulary():
    for path in sorted(OPENMSX.glob("*.mid")):
        rows = events.encode(path)
        for i, field in enumerate(events.FIELDS):
            assert 0 <= rows[:, i].min() and rows[:, i].max() < events.VOCAB[field], (path, field)
        assert not rows[~events.APPLIES[rows[:, 0]]].any(), "fields that do not apply hold 0"


@pytest.mark.parametrize("content, reason", [
    (b"", "not a MIDI file"),
    (b"hello, I am a text file named .mid\n", "not a MIDI file"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x00\x60MTrk\x00\x00\x10\x00\x00\x90", "claims"),
    (b"MThd\x00\x00\x7f\x06\x00\x01\x00\x01\x00\x60", "header length"),
])
def test_corrupt_files_raise_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(events.MidiError, match=reason) as error:
        events.encode(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_truncated_real_file_raises(tmp_path):
    data = (POP909 / "pop909_001.mid").read_bytes()
    path = tmp_path / "truncated.mid"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(events.MidiError):
        events.encode(path)


def test_reader_agrees_with_mido_on_message_counts():
    for path in sorted(OPENMSX.glob("*.mid"))[:8]:
        messages = midi.read_midi(path)
        raw = [m for t in mido.MidiFile(path).tracks for m in t]
        note_ons = sum(m.type == "note_on" and m.velocity > 0 for m in raw)
        assert int((messages.kind == midi.NOTE_ON).sum()) == note_ons
        assert int((messages.kind == midi.TEMPO).sum()) == sum(m.type == "set_tempo" for m in raw)
        assert int((messages.kind == midi.PROGRAM_CHANGE).sum()) == sum(m.type == "program_change" for m in raw)


def test_stray_system_messages_in_a_track_are_skipped(tmp_path):
    # A song-position pointer (F2 + 2 bytes) and a timing clock (F8) between two notes: not file
    # events, but some writers leave them in; the notes around them must survive.
    body = bytes([0x00, 0x90, 60, 100, 0x10, 0x80, 60, 0, 0x00, 0xF2, 0x01, 0x02, 0x00, 0xF8,
                  0x00, 0x90, 62, 90, 0x10, 0x80, 62, 0]) + b"\x00\xff\x2f\x00"
    rows = events.encode(raw_file(tmp_path / "stray.mid", 96, body))
    assert column(rows, "note", events.NOTE_ON).tolist() == [60, 62]
