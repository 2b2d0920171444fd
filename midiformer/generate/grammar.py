"""What a sampled event may be, given the song so far: one boolean mask per field, per sample.

The sampler (sampling.py) picks the fields of an event in events.FIELDS order; before each field it
asks `SongState.allowed(field_index, chosen)` which values are valid given the fields already picked.
The masks keep the codec's grammar (codec/grammar.py), so that a sample is a sequence the codec could
have written:

    type        never START (a song has one, at row 0); END only if allowed; note_off only while a note
                sounds; note_on only on a channel whose program is allowed (see `instruments`);
                control only if the codec carries controllers, pitch_bend only if it carries bends
    time        a time_shift row carries exactly MAX_TIME_SHIFT; the row after a time_shift >= 1
    channel     note_off: a channel with a sounding note; note_on: a channel that may play; program,
                control, pitch_bend: an allowed channel; tempo: 0..7 (the top bits of 24)
    instrument  note_on: its channel's program (a new instrument takes a program row first);
                program on a melodic channel: an allowed program; control: a carried controller
                (`controls`; None: any controller 0-119, as the grammar-masked likelihood allows)
    note        note_off: a pitch sounding on the chosen channel
    velocity    note_on: 1..127 (a MIDI note-on of velocity 0 is a note-off); tempo: never 0 us
    duration    note_on: OPEN only, when the codec did not code durations (data.codec.durations=false)

"Sounding" counts the OPEN notes (codec/grammar.py): those a note_off row ends.

Fields that do not apply to the sampled type are set to 0 by the sampler (as in training, where
they are masked and fed to cascade heads as 0). The state also follows the tempo and the time in
seconds, so that generation can stop after `seconds` of music.
"""
from __future__ import annotations

import numpy as np
import torch

from midiformer.codec import events
from midiformer.codec.events import CHANNEL, DURATION, INSTRUMENT, NOTE, TIME, TYPE, VELOCITY
from midiformer.codec.grammar import opens_a_note
from midiformer.common import ConfigError

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
    """Per sample: the notes sounding and the program of each channel, the tempo, seconds since the
    first row, and whether the last row was a time_shift."""

    def __init__(self, batch: int, ticks_per_beat: int, instruments=None, allow_end: bool = True,
                 device: torch.device | str = "cpu", controls=None, pitch_bend: bool = True, durations: bool = True):
        self.ticks_per_beat, self.allow_end, self.pitch_bend = ticks_per_beat, allow_end, bool(pitch_bend)
        self.durations = bool(durations)
        self.sounding = torch.zeros(batch, 16, 128, dtype=torch.long, device=device)
        self.program = torch.zeros(batch, 16, dtype=torch.long, device=device)
        self.tempo = torch.full((batch,), float(events.DEFAULT_TEMPO), dtype=torch.float64, device=device)
        self.seconds = torch.zeros(batch, dtype=torch.float64, device=device)
        self.after_shift = torch.zeros(batch, dtype=torch.bool, device=device)
        programs, drums = parse_instruments(instruments)
        self.programs = torch.from_numpy(programs).to(device)
        # the controllers a control row may name: the codec's (data.codec.controls), else any controller
        # (0-119), as the grammar-masked likelihood, which knows no codec settings, allows
        self.controls = torch.zeros(128, dtype=torch.bool, device=device)
        self.controls[list(controls) if controls is not None else slice(0, 120)] = True
        self.channels = torch.ones(16, dtype=torch.bool, device=device)  # channels a program / control may use
        self.channels[events.DRUM_CHANNEL] = drums
        self.channels[: events.DRUM_CHANNEL] = self.channels[events.DRUM_CHANNEL + 1:] = bool(programs.any())
        self.drums = drums

    # --- the song so far ------------------------------------------------------------------------

    def update(self, rows: torch.Tensor, running: torch.Tensor | None = None) -> None:
        """Follow one new event per sample: rows (B, F); samples not `running` (B,) bool stay as they are."""
        type_, time, channel, note = rows[:, TYPE], rows[:, TIME], rows[:, CHANNEL], rows[:, NOTE]
        running = torch.ones_like(type_, dtype=torch.bool) if running is None else running
        batch = torch.arange(len(rows), device=rows.device)
        change = (opens_a_note(rows).long() - (type_ == events.NOTE_OFF).long()) * running
        self.sounding[batch, channel, note] = (self.sounding[batch, channel, note] + change).clamp(min=0)
        is_program = (type_ == events.PROGRAM) & running
        self.program[batch, channel] = torch.where(is_program, rows[:, INSTRUMENT], self.program[batch, channel])
        # The gap before this row plays at the tempo in force before it (as events.seconds counts it).
        self.seconds += time.double() * running * self.tempo / (1e6 * self.ticks_per_beat)
        is_tempo = (type_ == events.TEMPO) & running
        if is_tempo.any():
            tempo = torch.as_tensor(events.tempo_of(rows.cpu().numpy()), dtype=torch.float64, device=self.tempo.device)
            self.tempo = torch.where(is_tempo, tempo, self.tempo)
        self.after_shift = torch.where(running, type_ == events.TIME_SHIFT, self.after_shift)

    def follow(self, rows: torch.Tensor) -> None:
        """Follow a whole primer: rows (T, F), the same for every sample."""
        for row in rows:
            self.update(row.expand(len(self.sounding), -1))

    def sounding_notes(self, sample: int) -> list[tuple[int, int]]:
        """(channel, pitch) of every note still sounding in one sample, once per sounding copy."""
        counts = self.sounding[sample]
        return [(int(c), int(p)) for c, p in counts.nonzero().tolist() for _ in range(int(counts[c, p]))]

    def playable(self) -> torch.Tensor:
        """(B, 16) bool: the channels a note_on may use: melodic ones whose program is allowed, and
        the drum channel if drums are."""
        playable = self.programs[self.program]
        playable[:, events.DRUM_CHANNEL] = self.drums
        return playable

    # --- the masks ------------------------------------------------------------------------------

    def allowed(self, field: int, chosen: torch.Tensor) -> torch.Tensor:
        """(B, VOCAB[field]) bool: the valid values of `field`, given chosen (B, field) fields 0..field-1."""
        batch = len(self.sounding)
        allowed = torch.ones(batch, events.VOCAB[events.FIELDS[field]], dtype=torch.bool, device=self.sounding.device)
        if field == TYPE:
            allowed[:, events.START] = False
            allowed[:, events.END] = self.allow_end
            allowed[:, events.NOTE_OFF] = self.sounding.flatten(1).any(1)
            allowed[:, events.NOTE_ON] = self.playable().any(1)
            allowed[:, events.PROGRAM] = self.channels.any()
            allowed[:, events.CONTROL] = self.channels.any() & self.controls.any()
            allowed[:, events.PITCH_BEND] = self.channels.any() & self.pitch_bend
            return allowed
        type_ = chosen[:, TYPE]
        is_ = {t: type_ == t for t in (events.NOTE_ON, events.NOTE_OFF, events.PROGRAM, events.TEMPO,
                                       events.TIME_SHIFT, events.CONTROL, events.PITCH_BEND)}
        on_a_channel = is_[events.PROGRAM] | is_[events.CONTROL] | is_[events.PITCH_BEND]
        if field == TIME:
            allowed[self.after_shift, 0] = False
            allowed[is_[events.TIME_SHIFT], : events.MAX_TIME_SHIFT] = False
        elif field == CHANNEL:
            allowed[is_[events.NOTE_OFF]] = self.sounding[is_[events.NOTE_OFF]].any(-1)
            allowed[is_[events.NOTE_ON]] = self.playable()[is_[events.NOTE_ON]]
            allowed[on_a_channel] = self.channels
            allowed[is_[events.TEMPO], events.TEMPO_CHANNELS:] = False
        elif field == INSTRUMENT:
            rows = is_[events.NOTE_ON].nonzero()[:, 0]
            allowed[rows] = False
            allowed[rows, self.program[rows, chosen[rows, CHANNEL]]] = True
            melodic = is_[events.PROGRAM] & (chosen[:, CHANNEL] != events.DRUM_CHANNEL)
            allowed[melodic] = self.programs
            allowed[is_[events.CONTROL]] = self.controls
        elif field == NOTE:
            rows = is_[events.NOTE_OFF].nonzero()[:, 0]
            allowed[rows] = self.sounding[rows, chosen[rows, CHANNEL]] > 0
        elif field == VELOCITY:
            allowed[is_[events.NOTE_ON], 0] = False
            zero_so_far = is_[events.TEMPO] & (chosen[:, CHANNEL:VELOCITY] == 0).all(1)
            allowed[zero_so_far, 0] = False  # a tempo of 0 microseconds per quarter
        elif field == DURATION and not self.durations:
            allowed[is_[events.NOTE_ON], events.OPEN + 1:] = False
        return allowed
