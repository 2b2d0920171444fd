"""Training-window augmentations, one registered class per `data/augment` choice.

Each is a callable `aug(window, rng, before=None) -> window` on one window of event rows (T+1,
len(FIELDS)), with a numpy Generator that the dataset derives from (seed, step, row): augmentation is
seeded, identical on every rank, and reproduced exactly on resume. `before` is the song's state before
the window's first row, (sounding note counts (16, 128), programs (16,)), as the grammar-masked
likelihood sees it (grammar.SongStart): augmentations keep it true, so the dataset computes it from
the stored rows. Rows whose type is `events.IGNORE` (padding) are never touched. They are applied to
training windows only, never to validation or test.

Every augmented window is a sequence the codec could have written, following on from `before`: each
augmentation's output passes the codec's grammar check (codec/grammar.py) before it is returned, so a
bug here stops training at once instead of teaching the model sequences that generation forbids.
"""
from __future__ import annotations

import math

import numpy as np

from midiformer.codec import events, grammar
from midiformer.codec.events import CHANNEL, NOTE, TIME, TYPE, VELOCITY
from midiformer.common import ConfigError
from midiformer.registry import Registry

AUGMENTS = Registry("data.augment")


def _rows_of_type(window: np.ndarray, *types: int) -> np.ndarray:
    return np.isin(window[:, TYPE], types)


State = tuple[np.ndarray, np.ndarray]  # (sounding (16, 128), programs (16,)) before a window


class Augmentation:
    """`augment` one window; the call checks the rows it returns against the codec's grammar."""

    def augment(self, window: np.ndarray, rng: np.random.Generator, before: State | None) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, window: np.ndarray, rng: np.random.Generator, before: State | None = None) -> np.ndarray:
        out = self.augment(window, rng, before)
        grammar.check(out[out[:, TYPE] != events.IGNORE], follow_state=before is not None, before=before)
        return out


def ends_of_notes_begun_before(window: np.ndarray, before: State | None) -> np.ndarray:
    """(T,) bool: the note_off rows that end a note sounding before the window. A note-off ends the
    earliest sounding note of its channel and pitch, so those are the first `sounding[c, p]` note-offs
    of each (c, p), up to the window's first START (the codec ends every note before its song's END)."""
    ends = np.zeros(len(window), bool)
    if before is None or not before[0].any():
        return ends
    left = np.asarray(before[0], np.int64).reshape(-1).copy()
    starts = np.nonzero(window[:, TYPE] == events.START)[0]
    first_start = int(starts[0]) if len(starts) else len(window)
    for i in np.nonzero(window[:first_start, TYPE] == events.NOTE_OFF)[0]:
        key = int(window[i, CHANNEL]) * 128 + int(window[i, NOTE])
        if left[key]:
            ends[i], left[key] = True, left[key] - 1
    return ends


@AUGMENTS.register("none")
class NoAugment(Augmentation):
    def augment(self, window: np.ndarray, rng: np.random.Generator, before: State | None) -> np.ndarray:
        return window


@AUGMENTS.register("transpose")
class Transpose(Augmentation):
    """Shift every pitched note of the window by the same random number of semitones.

    The shift is drawn uniformly among the shifts in [-max_semitones, max_semitones] that keep every
    note of the window within 0..127, so no note is ever clamped onto another pitch (a window that
    already spans the whole range is left as it is). Only note_on / note_off rows off the drum
    channel move: drum notes name instruments, not pitches, and tempo and pitch_bend rows use the
    note field for other bits. The note-offs of notes that began before the window stay where they
    are: they end notes sounding at their own pitch (the state `before`).
    """

    def __init__(self, max_semitones: int = 6):
        if max_semitones < 0:
            raise ConfigError(f"data.augment.max_semitones={max_semitones} must be >= 0")
        self.max_semitones = int(max_semitones)

    def augment(self, window: np.ndarray, rng: np.random.Generator, before: State | None) -> np.ndarray:
        pitched = _rows_of_type(window, events.NOTE_ON, events.NOTE_OFF) & (window[:, CHANNEL] != events.DRUM_CHANNEL)
        pitched &= ~ends_of_notes_begun_before(window, before)
        if not pitched.any():
            return window
        notes = window[pitched, NOTE]
        lowest = max(-self.max_semitones, -int(notes.min()))
        highest = min(self.max_semitones, 127 - int(notes.max()))
        window = window.copy()
        window[pitched, NOTE] += rng.integers(lowest, highest + 1)
        return window


@AUGMENTS.register("velocity")
class Velocity(Augmentation):
    """Play the window louder or softer: velocity * scale + offset on note_on rows, clamped to 1..127.

    scale is drawn uniformly from [min_scale, max_scale], offset as an integer from
    [-max_offset, max_offset], once per window (one performance, one dynamic change).
    """

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.2, max_offset: int = 10):
        if not 0 < min_scale <= max_scale:
            raise ConfigError(f"data.augment: need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale, self.max_offset = float(min_scale), float(max_scale), int(max_offset)

    def augment(self, window: np.ndarray, rng: np.random.Generator, before: State | None) -> np.ndarray:
        scale = rng.uniform(self.min_scale, self.max_scale)
        offset = rng.integers(-self.max_offset, self.max_offset + 1)
        note_on = _rows_of_type(window, events.NOTE_ON)
        window = window.copy()
        louder = np.rint(window[note_on, VELOCITY] * scale) + offset
        window[note_on, VELOCITY] = np.clip(louder, 1, 127)  # 0 would turn a note-on into a note-off
        return window


@AUGMENTS.register("tempo")
class TempoStretch(Augmentation):
    """Play the window slower or faster: the time of every row is stretched by one random factor.

    The factor is drawn log-uniformly from [min_factor, max_factor] (so 0.8 and 1.25 are equally
    likely). Each row's position in the window (grid steps from the row before the window) is
    stretched, then rounded to the grid, so rounding errors never accumulate along the window. The
    rows are then framed again with the codec's own framing (events.with_time_shifts): a rest that
    grows past MAX_TIME_SHIFT gains time_shift rows, one that shrinks loses them, and every window
    is a sequence the codec could have written. The window keeps its row count, so batches keep
    their shape: rows framed past its end are dropped; a window that lost time_shift rows ends in
    padding (IGNORE rows, which the loss does not count). A note-on's duration is stretched with it
    (its end is a position too; one stretched past MAX_DURATION is cut to it). Tempo rows are left
    as they are: the music is played at a different speed, it does not carry a different tempo marking.
    """

    def __init__(self, min_factor: float = 0.9, max_factor: float = 1.1):
        if not 0 < min_factor <= max_factor:
            raise ConfigError(f"data.augment: need 0 < min_factor <= max_factor, got {min_factor}, {max_factor}")
        self.min_factor, self.max_factor = float(min_factor), float(max_factor)

    def augment(self, window: np.ndarray, rng: np.random.Generator, before: State | None) -> np.ndarray:
        factor = math.exp(rng.uniform(math.log(self.min_factor), math.log(self.max_factor)))
        real = window[:, TYPE] != events.IGNORE
        rows = window[real]
        position = np.cumsum(rows[:, TIME])
        stretched = np.rint(position * factor).astype(np.int64)
        rows = events.stretch_durations(rows, position, factor)
        is_shift = rows[:, TYPE] == events.TIME_SHIFT
        kept, at = rows[~is_shift], stretched[~is_shift]
        framed = events.with_time_shifts(kept, np.diff(at, prepend=0))
        # Time shifts after the last other row: a rest that goes on past the window, framed as the
        # whole time-shift rows it holds once stretched (its remainder belongs to the next row).
        trailing_rest = int(stretched[-1] - (at[-1] if len(at) else 0)) if len(rows) else 0
        shifts = np.zeros((trailing_rest // events.MAX_TIME_SHIFT, window.shape[1]), np.int64)
        shifts[:, TYPE], shifts[:, TIME] = events.TIME_SHIFT, events.MAX_TIME_SHIFT
        framed = np.concatenate([framed, shifts])[: len(rows)]
        out = np.full_like(window, events.IGNORE)  # padding only ever follows the real rows
        out[: len(framed)] = framed
        return out


@AUGMENTS.register("all")
class AllAugments(Augmentation):
    """transpose, then velocity, then tempo, each with its own options (a mapping of them)."""

    def __init__(self, transpose: dict | None = None, velocity: dict | None = None, tempo: dict | None = None):
        self.steps = [Transpose(**(transpose or {})), Velocity(**(velocity or {})), TempoStretch(**(tempo or {}))]

    def augment(self, window: np.ndarray, rng: np.random.Generator, before: State | None) -> np.ndarray:
        for step in self.steps:
            window = step.augment(window, rng, before)
        return window
