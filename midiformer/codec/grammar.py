"""The grammar of the event stream: the rules every sequence the codec writes obeys, as one check
(numpy, for tests, augmentations and generation) and as masks of which values can follow the past
(torch, for the grammar-masked likelihood).

    check(rows, song=True, controls=[64], pitch_bend=True)   # raises GrammarError (one line)
    violations(rows)                                          # every broken rule, "row i: ..."
    field_masks(inputs, targets, start)                       # {field: (B, T, V) bool}

The rules (what each field holds per type: the table in events.py):

    every row    its type is one of TYPES; every field within VOCAB; a field that does not apply
                 (events.APPLIES) holds 0
    start        time 0; right after an END (songs follow each other in a split), and never elsewhere
    end          followed by nothing or by the START of the next song; no note is sounding
    time_shift   time = MAX_TIME_SHIFT, and the row after it has time >= 1
    note_on      velocity 1..127 (a MIDI note-on of velocity 0 is a note-off); instrument = its
                 channel's program (its last PROGRAM row in the song, else 0)
    note_off     only while an OPEN note sounds (a note-on of duration OPEN); ends one on its channel
                 and pitch (a note-on with a duration ends by itself: the "sounding" state below counts
                 OPEN notes only)
    tempo        channel field 0..7 (the top 3 of 24 bits); microseconds per quarter >= 1
    control      the controller is one of the carried `controls` (data.codec), never 120-127
    pitch_bend   only with pitch_bend=True (data.codec)

The masks below use the rules that need no codec settings (START after END, the time of time
shifts, the note fields of note rows, the tempo's top bits, controllers below 120); the check uses
them all (which controllers are carried, whether bends are, needs the settings). Every rule
holds for every song the codec writes (tests check each dev file), so a likelihood that gives the
excluded values no probability is still an exact code length, and is shorter.

Fields are decided in events.FIELDS order, so a field's rule may use the fields before it in the same
row (a note-off's pitch depends on its channel). The state a rule needs (notes sounding per channel
and pitch, each channel's program) is the song's past; a window cut from the middle of a song gets
the state at its first row from `SongStart.before` (the song's rows up to there), and the check
follows the state from a START row on, or from row 0 when given the state before it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from midiformer.codec import events
from midiformer.codec.events import (
    CHANNEL,
    DURATION,
    END,
    FIELDS,
    INSTRUMENT,
    MAX_TIME_SHIFT,
    NOTE,
    NOTE_OFF,
    NOTE_ON,
    OPEN,
    PROGRAM,
    START,
    TIME,
    TIME_SHIFT,
    TYPE,
    VELOCITY,
    VOCAB,
)

KEYS = 16 * 128  # (channel, pitch) pairs
# What a song has played so far, counted (the cache of model/played.py CascadeCacheHeads): per channel, how
# often its note-ons took each pitch, velocity and duration (one row of COUNT_WIDTH per channel, the columns
# side by side from COUNT_OFFSETS), and how often each time value led to a note-on.
COUNTED_COLUMNS = (NOTE, VELOCITY, DURATION)
COUNT_OFFSETS = tuple(int(x) for x in np.cumsum([0] + [VOCAB[FIELDS[c]] for c in COUNTED_COLUMNS]))
COUNT_WIDTH = COUNT_OFFSETS[-1]


@dataclass
class SongStart:
    """The state before the first row of each window: sounding (B, 16, 128) note counts, programs (B, 16),
    ticks (B,): the grid tick (since the song's START) of the row before the window, and what the song
    played before it: played (B, 16, COUNT_WIDTH) and gaps (B, VOCAB time) counts (played_counts)."""

    sounding: torch.Tensor
    programs: torch.Tensor
    ticks: torch.Tensor
    played: torch.Tensor
    gaps: torch.Tensor

    @staticmethod
    def before(events: np.ndarray, offsets: np.ndarray, starts: np.ndarray) -> SongStart:
        """The state before row `starts[i]` of a split (`offsets`: the first row of each song, then the row count)."""
        song_firsts = np.asarray(offsets)[np.searchsorted(offsets, starts, side="right") - 1]
        sounding = np.zeros((len(starts), KEYS), np.int16)
        programs = np.zeros((len(starts), 16), np.int64)
        ticks = np.zeros(len(starts), np.int64)
        played, gaps = np.zeros((len(starts), 16, COUNT_WIDTH), np.int32), np.zeros((len(starts), VOCAB["time"]), np.int32)
        for i, (first, start) in enumerate(zip(song_firsts, starts)):
            rows = np.asarray(events[first:start])
            sounding[i], programs[i] = _state_of(rows)
            ticks[i] = rows[:, TIME].sum(dtype=np.int64)
            played[i], gaps[i] = played_counts(rows)
        return SongStart(torch.from_numpy(sounding).view(-1, 16, 128), torch.from_numpy(programs),
                         torch.from_numpy(ticks), torch.from_numpy(played), torch.from_numpy(gaps))

    @property
    def counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(played, gaps): what the song played before each window, for model/played.py CascadeCacheHeads."""
        return self.played, self.gaps

    def to(self, device: torch.device | str) -> SongStart:
        return SongStart(*(part.to(device) for part in (self.sounding, self.programs, self.ticks, self.played, self.gaps)))


class StateTracker:
    """SongStart.before for windows that come in increasing order (evaluation): each call reads only the
    rows since the previous one, so a whole split costs one pass, not one per window."""

    def __init__(self, events: np.ndarray, offsets: np.ndarray):
        self.events, self.offsets = events, np.asarray(offsets)
        self.row, self.song = -1, -1
        self._new_song()

    def _new_song(self) -> None:
        self.sounding, self.programs, self.ticks = np.zeros(KEYS, np.int64), np.zeros(16, np.int64), 0
        self.played, self.gaps = played_counts(self.events[:0])

    def before(self, starts: np.ndarray) -> SongStart:
        states = [self._before(int(start)) for start in starts]
        sounding, programs, ticks, played, gaps = zip(*states)
        return SongStart(torch.from_numpy(np.stack(sounding).astype(np.int16)).view(-1, 16, 128),
                         torch.from_numpy(np.stack(programs)), torch.tensor(ticks, dtype=torch.int64),
                         torch.from_numpy(np.stack(played)), torch.from_numpy(np.stack(gaps)))

    def _before(self, start: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
        song = int(np.searchsorted(self.offsets, start, side="right") - 1)
        if song != self.song or start < self.row:  # a new song (or going back): from its first row
            self.song, self.row = song, int(self.offsets[song])
            self._new_song()
        rows = np.asarray(self.events[self.row:start])
        self.sounding, self.programs = _state_of(rows, self.sounding, self.programs)
        self.ticks += int(rows[:, TIME].sum(dtype=np.int64))
        self.played, self.gaps = played_counts(rows, self.played, self.gaps)
        self.row = start
        return self.sounding.copy(), self.programs.copy(), self.ticks, self.played.copy(), self.gaps.copy()


def _state_of(rows: np.ndarray, sounding: np.ndarray | None = None,
              programs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sounding counts (KEYS,), programs (16,)) after `rows`, which follow the given state (default: a
    song's start)."""
    type_ = rows[:, TYPE]
    key = rows[:, CHANNEL].astype(np.int64) * 128 + rows[:, NOTE]
    change = opens_a_note(rows).astype(np.int64) - (type_ == NOTE_OFF)
    sounding = (0 if sounding is None else sounding) + np.bincount(key, weights=change, minlength=KEYS).astype(np.int64)
    programs = np.zeros(16, np.int64) if programs is None else programs.copy()
    program_rows = rows[type_ == PROGRAM]
    if len(program_rows):  # the last program row of each channel
        last = len(program_rows) - 1 - np.unique(program_rows[::-1, CHANNEL], return_index=True)[1]
        programs[program_rows[last, CHANNEL]] = program_rows[last, INSTRUMENT]
    return sounding, programs


def played_counts(rows: np.ndarray, played: np.ndarray | None = None,
                  gaps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(played (16, COUNT_WIDTH), gaps (VOCAB time,)) int32 counts of the note-ons of `rows`, added to the
    given ones (default: none, a song's start)."""
    notes = np.asarray(rows)[np.asarray(rows)[:, TYPE] == NOTE_ON].astype(np.int64)
    index = np.concatenate([notes[:, CHANNEL] * COUNT_WIDTH + offset + notes[:, column]
                            for column, offset in zip(COUNTED_COLUMNS, COUNT_OFFSETS)])
    played_now = np.bincount(index, minlength=16 * COUNT_WIDTH).reshape(16, COUNT_WIDTH)
    gaps_now = np.bincount(notes[:, TIME], minlength=VOCAB["time"])
    return ((played_now if played is None else played + played_now).astype(np.int32),
            (gaps_now if gaps is None else gaps + gaps_now).astype(np.int32))


def opens_a_note(rows: np.ndarray | torch.Tensor):
    """Rows (..., F) that start an OPEN note: one that a note_off row will end."""
    return (rows[..., TYPE] == NOTE_ON) & (rows[..., DURATION] == OPEN)


def onset_ticks(inputs: torch.Tensor, start_ticks: torch.Tensor | None = None) -> torch.Tensor:
    """The grid tick (since its song's START) of each input row (B, T); start_ticks (B,): that of the row
    before the window (None: the window begins a song)."""
    total = inputs[..., TIME].cumsum(dim=1)
    last_start = _last_index(inputs[..., TYPE] == START)
    since_start = total - total.gather(1, last_start.clamp(min=0))
    before = 0 if start_ticks is None else start_ticks.view(-1, 1)
    return torch.where(last_start >= 0, since_start, total + before)


def _last_index(flags: torch.Tensor) -> torch.Tensor:
    """For (B, T, ...) bool flags: the index of the last t' <= t where flags is set, else -1."""
    steps = torch.arange(flags.shape[1], device=flags.device).view(1, -1, *([1] * (flags.dim() - 2)))
    return torch.where(flags, steps, -1).cummax(dim=1).values


def sounding_after_each_row(inputs: torch.Tensor, start: SongStart) -> torch.Tensor:
    """Sounding note counts (B, 16, 128, T) after each input row (B, T, F).

    No reset is needed at a START inside the window: the codec ends every note before its song's END,
    so the counts are back to zero there. (Laid out with T last: the cumulative sum runs along
    contiguous memory, 10x faster than along the middle dimension.)"""
    batch, length = inputs.shape[:2]
    type_ = inputs[..., TYPE]
    key = inputs[..., CHANNEL] * 128 + inputs[..., NOTE]
    change = opens_a_note(inputs).to(torch.int16) - (type_ == NOTE_OFF).to(torch.int16)
    deltas = torch.zeros(batch, KEYS, length, dtype=torch.int16, device=inputs.device)
    deltas.scatter_(1, key.unsqueeze(1), change.unsqueeze(1))
    deltas[..., 0] += start.sounding.view(batch, KEYS).to(torch.int16)
    return deltas.cumsum(dim=2, dtype=torch.int16).view(batch, 16, 128, length)


def sounding_per_channel(inputs: torch.Tensor, start: SongStart) -> torch.Tensor:
    """How many notes sound on each channel (B, T, 16) after each input row."""
    type_, channel = inputs[..., TYPE], inputs[..., CHANNEL]
    change = opens_a_note(inputs).long() - (type_ == NOTE_OFF).long()
    one_hot = (channel.unsqueeze(-1) == torch.arange(16, device=inputs.device)) * change.unsqueeze(-1)
    return start.sounding.sum(-1).unsqueeze(1) + one_hot.cumsum(dim=1)


def programs_after_each_row(inputs: torch.Tensor, start: SongStart) -> torch.Tensor:
    """Each channel's program (B, T, 16) after each input row; a START row resets every channel to 0."""
    type_, channel = inputs[..., TYPE], inputs[..., CHANNEL]
    sets_program = (type_ == PROGRAM).unsqueeze(-1) & (channel.unsqueeze(-1) == torch.arange(16, device=inputs.device))
    resets = (type_ == START).unsqueeze(-1).expand(-1, -1, 16)
    last = _last_index(sets_program | resets)  # (B, T, 16)
    value = torch.where(resets, 0, inputs[..., INSTRUMENT].unsqueeze(-1).expand(-1, -1, 16))
    return torch.where(last >= 0, value.gather(1, last.clamp(min=0)), start.programs.unsqueeze(1))


def field_masks(inputs: torch.Tensor, targets: torch.Tensor, start: SongStart) -> dict[str, torch.Tensor]:
    """{field: (B, T, V) bool}: the values the grammar allows for each target row, given the inputs (the past)
    and the target's own earlier fields. targets hold IGNORE where a field does not apply; such entries are
    left unrestricted (they do not count)."""
    batch, length = inputs.shape[:2]
    target_type, target_channel = targets[..., TYPE], targets[..., CHANNEL].clamp(min=0)
    is_on, is_off = target_type == NOTE_ON, target_type == NOTE_OFF
    sounding = sounding_after_each_row(inputs, start)  # (B, 16, 128, T)
    index = target_channel.view(batch, length, 1, 1).expand(-1, -1, 1, 128)
    pitches = sounding.permute(0, 3, 1, 2).gather(2, index).squeeze(2) > 0  # (B, T, 128): on the target's channel
    channel_sounds = sounding_per_channel(inputs, start) > 0  # (B, T, 16)
    programs = programs_after_each_row(inputs, start)

    def ones(field: str) -> torch.Tensor:
        return torch.ones(batch, length, VOCAB[field], dtype=torch.bool, device=inputs.device)

    type_mask = ones("type")
    after_end = inputs[..., TYPE] == END
    type_mask[..., START] = after_end
    type_mask[after_end] = torch.arange(VOCAB["type"], device=inputs.device) == START
    type_mask[..., NOTE_OFF] &= channel_sounds.any(-1)

    time_mask = ones("time")
    time_mask[..., 0] &= inputs[..., TYPE] != TIME_SHIFT
    time_mask[target_type == TIME_SHIFT] = torch.arange(VOCAB["time"], device=inputs.device) == MAX_TIME_SHIFT

    channel_mask = torch.where(is_off.unsqueeze(-1), channel_sounds, ones("channel"))
    channel_mask[target_type == events.TEMPO, events.TEMPO_CHANNELS:] = False  # the top 3 of 24 tempo bits

    program = programs.gather(2, target_channel.unsqueeze(-1))  # (B, T, 1)
    instrument_mask = torch.where(is_on.unsqueeze(-1), torch.arange(128, device=inputs.device) == program,
                                  ones("instrument"))
    instrument_mask[target_type == events.CONTROL, 120:] = False  # channel mode messages are never carried

    note_mask = torch.where(is_off.unsqueeze(-1), pitches, ones("note"))

    velocity_mask = ones("velocity")
    velocity_mask[..., 0] &= ~is_on
    masks = {"type": type_mask, "time": time_mask, "channel": channel_mask, "instrument": instrument_mask,
             "note": note_mask, "velocity": velocity_mask, "duration": ones("duration")}
    assert tuple(masks) == FIELDS
    return masks


# --- the check of a whole sequence -------------------------------------------------------------

_HIGHEST = np.array([VOCAB[f] - 1 for f in FIELDS])


class GrammarError(ValueError):
    """A sequence the codec could not have written; the message is one line naming the first bad row."""


def check(rows: np.ndarray, song: bool = False, controls: Iterable[int] | None = None,
          pitch_bend: bool | None = None, follow_state: bool = True,
          before: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Raise GrammarError if `rows` break a rule (see the module doc). song=True: the rows are one
    whole song (START first, END last). controls / pitch_bend: the codec settings, if known.
    before: (sounding note counts (16, 128), programs (16,)) before row 0, if known (else the state
    is followed from the first START on); follow_state=False checks the rules of single rows only."""
    found = violations(rows, song, controls, pitch_bend, follow_state, before)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise GrammarError(f"{found[0]}{more}")


def violations(rows: np.ndarray, song: bool = False, controls: Iterable[int] | None = None,
               pitch_bend: bool | None = None, follow_state: bool = True,
               before: tuple[np.ndarray, np.ndarray] | None = None) -> list[str]:
    """Every broken rule as 'row i: what', in row order within each rule."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != len(FIELDS):
        return [f"rows of shape {rows.shape}, not (n, {len(FIELDS)})"]
    found: list[str] = []

    def each(bad: np.ndarray, what: str) -> None:
        found.extend(f"row {i}: {what}" for i in np.nonzero(bad)[0][:20])

    type_ = rows[:, TYPE]
    known = (type_ >= 0) & (type_ < len(events.TYPES))
    each(~known, "unknown type")
    rows, type_ = rows.copy(), np.where(known, type_, events.TIME_SHIFT)
    rows[~known] = 0
    out_of_range = (rows < 0) | (rows > _HIGHEST)
    for f, name in enumerate(FIELDS):
        each(out_of_range[:, f], f"{name}={rows[out_of_range[:, f], f][:1]} outside its vocabulary")
    each((rows != 0) & ~events.APPLIES[type_] & known[:, None], "a field that does not apply is not 0")
    is_ = {t: type_ == t for t in range(len(events.TYPES))}
    each(is_[events.START] & (rows[:, TIME] != 0), "start with time > 0")
    after_end = np.concatenate([[True], is_[events.END][:-1]])
    each(is_[events.START] & ~after_end, "start that does not begin a song")
    before_start = np.concatenate([is_[events.START][1:], [True]])  # the last row may be anything
    each(is_[events.END] & ~before_start, "end followed by something else than a start")
    each(is_[events.TIME_SHIFT] & (rows[:, TIME] != events.MAX_TIME_SHIFT), "time_shift not of MAX_TIME_SHIFT")
    after_shift = np.concatenate([[False], is_[events.TIME_SHIFT][:-1]])
    each(after_shift & (rows[:, TIME] == 0), "time 0 right after a time_shift")
    each(is_[events.NOTE_ON] & (rows[:, VELOCITY] == 0), "note_on of velocity 0")
    each(is_[events.TEMPO] & (rows[:, CHANNEL] >= events.TEMPO_CHANNELS), "tempo above 24 bits")
    each(is_[events.TEMPO] & (events.tempo_of(rows) == 0), "tempo of 0 microseconds per quarter")
    carried = np.isin(rows[:, INSTRUMENT], list(controls) if controls is not None else range(120))
    each(is_[events.CONTROL] & ~carried, "control of a controller that is not carried")
    if pitch_bend is False:
        each(is_[events.PITCH_BEND], "pitch_bend, which the settings do not carry")
    if song and (not len(rows) or not is_[events.START][0] or not is_[events.END][-1]
                 or is_[events.START].sum() != 1):
        found.append("row 0: not one song (START first, END last, one of each)")
    if follow_state:
        found.extend(_state_violations(rows, before))
    return found


def _state_violations(rows: np.ndarray, before: tuple[np.ndarray, np.ndarray] | None) -> list[str]:
    """note_off ends a sounding note, note_on plays its channel's program, nothing sounds at END."""
    found = []
    known, program, sounding = False, [0] * 16, np.zeros((16, 128), np.int64)
    if before is not None:
        known = True
        sounding = np.asarray(before[0], np.int64).reshape(16, 128).copy()
        program = [int(p) for p in np.asarray(before[1]).reshape(16)]
    for i, (type_, _time, channel, instrument, note, _velocity, duration) in enumerate(rows.tolist()):
        if type_ == events.START:
            known, program, sounding = True, [0] * 16, np.zeros((16, 128), np.int64)
        elif not known:
            continue
        elif type_ == events.NOTE_ON:
            sounding[channel, note] += duration == OPEN
            if instrument != program[channel]:
                found.append(f"row {i}: note_on of instrument {instrument} on channel {channel}, "
                             f"whose program is {program[channel]}")
        elif type_ == events.NOTE_OFF:
            if sounding[channel, note]:
                sounding[channel, note] -= 1
            else:
                found.append(f"row {i}: note_off of channel {channel} pitch {note}, which is not sounding")
        elif type_ == events.PROGRAM:
            program[channel] = instrument
        elif type_ == events.END and sounding.any():
            found.append(f"row {i}: end while {int(sounding.sum())} note(s) sound")
    return found
