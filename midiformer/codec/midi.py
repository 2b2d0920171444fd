"""Standard MIDI Files: read the messages the codec needs, write a file back.

Why not a library: symusic, miditoolkit and pretty_midi drop MIDI channel numbers (a raw-MIDI codec
must keep them), and mido keeps everything but builds a Python object per message (~50 files/s
here, slower than the MidiTok baseline). This reader keeps only what the codec reads (notes,
program changes, control changes, pitch bends, tempo) as flat integer lists, ~20x faster than mido; mido stays in the tests as
an independent oracle that checks it on every file of the dev corpus.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NOTE_OFF, NOTE_ON, CONTROL_CHANGE, PROGRAM_CHANGE, PITCH_BEND, TEMPO = 0x80, 0x90, 0xB0, 0xC0, 0xE0, 0xFF  # kinds
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_DATA_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1}  # the others (F4-F6, F8-FE) carry no data


class MidiError(ValueError):
    """A file that is not a readable Standard MIDI File; the message is one line."""


@dataclass
class MidiMessages:
    """The messages of every track merged in time order (stable: track order breaks ties).

    kind is NOTE_ON / NOTE_OFF / CONTROL_CHANGE / PROGRAM_CHANGE / PITCH_BEND / TEMPO:

        NOTE_ON, NOTE_OFF   data1 = pitch, data2 = velocity (a note-on of velocity 0 is stored as NOTE_OFF)
        CONTROL_CHANGE      data1 = controller number, data2 = value (0..127; a larger byte is refused)
        PROGRAM_CHANGE      data1 = program
        PITCH_BEND          data1 = the 14-bit value (LSB | MSB << 7; 8192 = no bend)
        TEMPO               data1 = microseconds per quarter note (24 bits), channel 0
    """

    ticks_per_quarter: int
    tick: np.ndarray
    kind: np.ndarray
    channel: np.ndarray
    data1: np.ndarray
    data2: np.ndarray
    end_tick: int  # the latest end-of-track: where the song ends


def read_midi(path: str | Path) -> MidiMessages:
    data = Path(path).read_bytes()
    try:
        return parse_midi(data)
    except MidiError as error:
        raise MidiError(f"{path}: {error}") from None
    except (IndexError, struct.error):
        raise MidiError(f"{path}: truncated MIDI data") from None


def parse_midi(data: bytes) -> MidiMessages:
    if len(data) < 14 or data[:4] != b"MThd":
        raise MidiError("not a MIDI file (no MThd header)")
    header_len, _format, n_tracks, division = struct.unpack(">IHHH", data[4:14])
    if header_len < 6 or 8 + header_len > len(data):
        raise MidiError(f"header length {header_len} is impossible")
    if division & 0x8000:
        raise MidiError("SMPTE time division is not supported")
    if division == 0:
        raise MidiError("ticks per quarter note is 0")
    pos, tracks = 8 + header_len, []
    while len(tracks) < n_tracks:
        if pos + 8 > len(data):
            raise MidiError(f"file ends after {len(tracks)} of {n_tracks} tracks")
        chunk_type, (length,) = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])
        start, pos = pos + 8, pos + 8 + length
        if pos > len(data):
            raise MidiError(f"track {len(tracks)} claims {length} bytes but the file ends first")
        if chunk_type == b"MTrk":  # other chunk types are allowed by the standard and skipped
            tracks.append(_parse_track(data, start, pos))
    return _merge(division, tracks)


def _read_varlen(data: bytes, i: int) -> tuple[int, int]:
    byte = data[i]
    value = byte & 0x7F
    while byte & 0x80:
        i += 1
        byte = data[i]
        value = (value << 7) | (byte & 0x7F)
    return value, i + 1


def _parse_track(data: bytes, i: int, end: int) -> tuple[list, int]:
    """One track's messages as a flat list (tick, kind, channel, data1, data2, tick, kind, ...) and its end tick.

    The hot loop of preparation: one flat list, extended once per message, and the one-byte delta
    (most of them) read inline."""
    out = []
    put = out.extend
    tick = status = 0
    while i < end:
        byte = data[i]
        i += 1
        if byte & 0x80:
            delta = byte & 0x7F
            while byte & 0x80:
                byte = data[i]
                i += 1
                delta = (delta << 7) | (byte & 0x7F)
            tick += delta
        else:
            tick += byte
        byte = data[i]
        if byte & 0x80:
            i += 1
            if byte < 0xF0:
                status = byte
        elif status:
            byte = status  # running status: the previous channel message's status byte repeats
        else:
            raise MidiError(f"data byte {byte:#04x} at offset {i} with no running status")
        if byte < 0xF0:
            kind, channel = byte & 0xF0, byte & 0x0F
            if kind == NOTE_ON:
                velocity = data[i + 1] & 0x7F
                put((tick, NOTE_ON if velocity else NOTE_OFF, channel, data[i] & 0x7F, velocity))
                i += 2
            elif kind == NOTE_OFF:
                put((tick, NOTE_OFF, channel, data[i] & 0x7F, data[i + 1] & 0x7F))
                i += 2
            elif kind == CONTROL_CHANGE:
                if data[i + 1] > 0x7F:  # a status byte where the value belongs: the stream is corrupt
                    raise MidiError(f"control change {data[i] & 0x7F} on channel {channel} at tick {tick} has "
                                    f"value {data[i + 1]}, outside 0..127")
                put((tick, CONTROL_CHANGE, channel, data[i] & 0x7F, data[i + 1]))
                i += 2
            elif kind == PITCH_BEND:
                put((tick, PITCH_BEND, channel, (data[i] & 0x7F) | ((data[i + 1] & 0x7F) << 7), 0))
                i += 2
            elif kind == PROGRAM_CHANGE:
                put((tick, PROGRAM_CHANGE, channel, data[i] & 0x7F, 0))
                i += 1
            else:
                i += _DATA_BYTES[kind]
        elif byte == 0xFF:  # meta event: type, length, payload
            meta_type = data[i]
            length, i = _read_varlen(data, i + 1)
            if meta_type == 0x51 and length == 3:
                put((tick, TEMPO, 0, (data[i] << 16) | (data[i + 1] << 8) | data[i + 2], 0))
            elif meta_type == 0x2F:
                break
            i += length
        elif byte in (0xF0, 0xF7):  # sysex: length, payload
            length, i = _read_varlen(data, i)
            i += length
        else:  # system common / real-time bytes do not belong in a file, but some writers leave them in
            i += _SYSTEM_DATA_BYTES.get(byte, 0)
    if i > end:
        raise MidiError("an event runs past the end of its track")
    return out, tick


def _merge(division: int, tracks: list[tuple[list, int]]) -> MidiMessages:
    flat = np.concatenate([np.asarray(t[0], dtype=np.int64) for t in tracks]) if tracks else np.zeros(0, np.int64)
    columns = flat.reshape(-1, 5)
    order = np.argsort(columns[:, 0], kind="stable")
    tick, kind, channel, data1, data2 = (np.ascontiguousarray(columns[order, k]) for k in range(5))
    end_tick = max((t[1] for t in tracks), default=0)
    return MidiMessages(division, tick, kind, channel, data1, data2, int(end_tick))


# --- writing ----------------------------------------------------------------------------------


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def track_chunk(messages: list[tuple[int, bytes]], name: str | None = None) -> bytes:
    """One MTrk chunk from (absolute tick, message bytes) pairs, already in time order."""
    body, last = bytearray(), 0
    if name:
        encoded = name.encode("utf-8")
        body += b"\x00\xff\x03" + _varlen(len(encoded)) + encoded
    for tick, message in messages:
        body += _varlen(tick - last) + message
        last = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + bytes(body)


def write_midi(path: str | Path, ticks_per_quarter: int, tracks: list[bytes]) -> None:
    """A format-1 Standard MIDI File from track chunks made by `track_chunk`."""
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), ticks_per_quarter)
    Path(path).write_bytes(header + b"".join(tracks))


def note_on(channel: int, pitch: int, velocity: int) -> bytes:
    return bytes((0x90 | channel, pitch, velocity))


def note_off(channel: int, pitch: int) -> bytes:
    return bytes((0x80 | channel, pitch, 0))


def program_change(channel: int, program: int) -> bytes:
    return bytes((0xC0 | channel, program))


def control_change(channel: int, controller: int, value: int) -> bytes:
    return bytes((0xB0 | channel, controller, value))


def pitch_bend(channel: int, value: int) -> bytes:
    """value: 14 bits, 8192 = no bend; written LSB first, as MIDI sends it."""
    return bytes((0xE0 | channel, value & 0x7F, value >> 7))


def tempo(microseconds_per_quarter: int) -> bytes:
    return b"\xff\x51\x03" + microseconds_per_quarter.to_bytes(3, "big")
