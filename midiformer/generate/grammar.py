"""What a sampled event may be, given the song so far: one boolean mask per field, per sample.

The sampler (sampling.py) picks the fields of an event in events.FIELDS order; before each field it
asks `SongState.allowed(field_index, chosen)` which values are valid given the fields already picked:

    type        never START (a song has one, at row 0); END only if allowed; note_off only while a note sounds;
                note_on / program only if some channel may take a new note (see `instruments`)
    time        a time_shift row carries exactly MAX_TIME_SHIFT (the codec's rule); after a time_shift, >= 1
    channel     note_off: a channel with a sounding note; program: an allowed channel; note_on: an allowed
                channel whose current program is allowed (drums: channel 9 allowed)
    instrument  note_on: the channel's current program (the codec's rule: codec/grammar.py);
                program on a melodic channel: one of the allowed programs
    note        note_off: a pitch sounding on the chosen channel
    velocity    note_on: 1..127 (a MIDI note-on of velocity 0 is a note-off)

Fields that do not apply to the sampled type are set to 0 by the sampler (as in training, where
they are masked and fed to cascade heads as 0). The state also follows the tempo and the time in
seconds, so that generation can stop after `seconds` of music.
"""
from __future__ import annotations

import numpy as np
import torch

from midiformer.codec import events
from midiformer.common import ConfigError

TYPE, TIME, CHANNEL, INSTRUMENT, NOTE, VELOCITY = range(len(events.FIELDS))
DRUMS = "drums"  # the word that allows channel 9 (General MIDI percussion) in `instruments`


def parse_instruments(instruments) -> tuple[np.ndarray, bool]:
    """`instruments=[0, 33, drums]` -> (allowed programs (128,) bool, drums allowed); None: everything."""
    if instruments is None:
        return np.ones(128, bool), True
    programs, drums = np.zeros(128, bool), False
    for item in instruments:
        if str(item).strip().lower() == DRUMS:
            drums = True
        elif str(item).strip().isdigit() and int(item) < 128:
            programs[int(item)] = True
        else:
            raise ConfigError(f"instruments: {item!r} is unknown; give General MIDI programs 0-127 (0-based, "
                              f"e.g. 0 = acoustic grand piano, 33 = electric bass) or '{DRUMS}'")
    if not programs.any() and not drums:
        raise ConfigError("instruments=[] allows no instrument at all; give at least one program or 'drums'")
    return programs, drums


class SongState:
    """Per sample: the notes sounding on each channel, the tempo, and seconds since the first row."""

    def __init__(self, batch: int, ticks_per_beat: int, instruments=None, allow_end: bool = True,
                 device: torch.device | str = "cpu"):
        self.ticks_per_beat, self.allow_end = ticks_per_beat, allow_end
        self.sounding = torch.zeros(batch, 16, 128, dtype=torch.long, device=device)
        self.programs = torch.zeros(batch, 16, dtype=torch.long, device=device)  # each channel's program
        self.after_time_shift = torch.zeros(batch, dtype=torch.bool, device=device)
        self.bpm = torch.full((batch,), 120.0, dtype=torch.float64, device=device)  # MIDI's default tempo
        self.seconds = torch.zeros(batch, dtype=torch.float64, device=device)
        programs, drums = parse_instruments(instruments)
        self.allowed_programs = torch.from_numpy(programs).to(device)
        self.channels = torch.ones(16, dtype=torch.bool, device=device)  # channels a note_on / program may use
        self.channels[events.DRUM_CHANNEL] = drums
        self.channels[: events.DRUM_CHANNEL] = self.channels[events.DRUM_CHANNEL + 1:] = bool(programs.any())

    # --- the song so far ------------------------------------------------------------------------

    def update(self, rows: torch.Tensor, running: torch.Tensor | None = None) -> None:
        """Follow one new event per sample: rows (B, F); samples not `running` (B,) bool stay as they are."""
        type_, time, channel, note = rows[:, TYPE], rows[:, TIME], rows[:, CHANNEL], rows[:, NOTE]
        running = torch.ones_like(type_, dtype=torch.bool) if running is None else running
        batch = torch.arange(len(rows), device=rows.device)
        change = ((type_ == events.NOTE_ON).long() - (type_ == events.NOTE_OFF).long()) * running
        self.sounding[batch, channel, note] = (self.sounding[batch, channel, note] + change).clamp(min=0)
        # The gap before this row plays at the tempo in force before it (as events.seconds counts it).
        self.seconds += time.double() * running * 60.0 / (self.bpm * self.ticks_per_beat)
        sets_program = (type_ == events.PROGRAM) & running
        self.programs[batch[sets_program], channel[sets_program]] = rows[sets_program, INSTRUMENT]
        self.after_time_shift = torch.where(running, type_ == events.TIME_SHIFT, self.after_time_shift)
        is_tempo = (type_ == events.TEMPO) & running
        if is_tempo.any():
            tempo_bin = (note << 7) | rows[:, VELOCITY]
            self.bpm = torch.where(is_tempo, torch.as_tensor(events.bin_to_bpm(tempo_bin.cpu().numpy()),
                                                             device=self.bpm.device), self.bpm)

    def follow(self, rows: torch.Tensor) -> None:
        """Follow a whole primer: rows (T, F), the same for every sample."""
        for row in rows:
            self.update(row.expand(len(self.sounding), -1))

    def sounding_notes(self, sample: int) -> list[tuple[int, int]]:
        """(channel, pitch) of every note still sounding in one sample, once per sounding copy."""
        counts = self.sounding[sample]
        return [(int(c), int(p)) for c, p in counts.nonzero().tolist() for _ in range(int(counts[c, p]))]

    # --- the masks ------------------------------------------------------------------------------

    def note_on_channels(self) -> torch.Tensor:
        """(B, 16) bool: channels a note_on may use: allowed, and (off the drum channel) playing an allowed program."""
        plays_allowed = self.allowed_programs[self.programs]
        plays_allowed[:, events.DRUM_CHANNEL] = True
        return self.channels & plays_allowed

    def allowed(self, field: int, chosen: torch.Tensor) -> torch.Tensor:
        """(B, VOCAB[field]) bool: the valid values of `field`, given chosen (B, field) fields 0..field-1."""
        batch = len(self.sounding)
        allowed = torch.ones(batch, events.VOCAB[events.FIELDS[field]], dtype=torch.bool, device=self.sounding.device)
        if field == TYPE:
            allowed[:, events.START] = False
            allowed[:, events.END] = self.allow_end
            allowed[:, events.NOTE_OFF] = self.sounding.flatten(1).any(1)
            allowed[:, events.NOTE_ON] = self.note_on_channels().any(1)
            allowed[:, events.PROGRAM] = self.channels.any()
            return allowed
        type_ = chosen[:, TYPE]
        is_off = type_ == events.NOTE_OFF
        is_on, is_program = type_ == events.NOTE_ON, type_ == events.PROGRAM
        if field == TIME:
            allowed[self.after_time_shift, 0] = False
            allowed[type_ == events.TIME_SHIFT, : events.MAX_TIME_SHIFT] = False
        elif field == CHANNEL:
            allowed[is_off] = self.sounding[is_off].any(-1)
            allowed[is_program] = self.channels
            allowed[is_on] = self.note_on_channels()[is_on]
        elif field == INSTRUMENT:
            melodic = is_program & (chosen[:, CHANNEL] != events.DRUM_CHANNEL)
            allowed[melodic] = self.allowed_programs
            rows = is_on.nonzero()[:, 0]
            program = self.programs[rows, chosen[rows, CHANNEL]]
            allowed[rows] = torch.arange(allowed.shape[1], device=allowed.device) == program.unsqueeze(1)
        elif field == NOTE:
            rows = is_off.nonzero()[:, 0]
            allowed[rows] = self.sounding[rows, chosen[rows, CHANNEL]] > 0
        elif field == VELOCITY:
            allowed[type_ == events.NOTE_ON, 0] = False
        return allowed
