"""Training-window augmentations, one registered class per `data/augment` choice.

Each is a callable `aug(window, rng) -> window` on one window of event rows (T+1, len(FIELDS)), with a
numpy Generator that the dataset derives from (seed, step, row): augmentation is seeded, identical on
every rank, and reproduced exactly on resume. Rows whose type is `events.IGNORE` (padding) are never
touched. They are applied to training windows only, never to validation or test.
"""
from __future__ import annotations

import math

import numpy as np

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.registry import Registry

AUGMENTS = Registry("data.augment")

TYPE, TIME, CHANNEL, NOTE, VELOCITY = (events.COLUMN[f] for f in ("type", "time", "channel", "note", "velocity"))


def _rows_of_type(window: np.ndarray, *types: int) -> np.ndarray:
    return np.isin(window[:, TYPE], types)


@AUGMENTS.register("none")
class NoAugment:
    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return window


@AUGMENTS.register("transpose")
class Transpose:
    """Shift every pitched note of the window by the same random number of semitones.

    The shift is drawn uniformly among the shifts in [-max_semitones, max_semitones] that keep every
    note of the window within 0..127, so no note is ever clamped onto another pitch (a window that
    already spans the whole range is left as it is). Only note_on / note_off rows off the drum
    channel move: drum notes name instruments, not pitches, and tempo rows use the note field for a
    tempo bin.
    """

    def __init__(self, max_semitones: int = 6):
        if max_semitones < 0:
            raise ConfigError(f"data.augment.max_semitones={max_semitones} must be >= 0")
        self.max_semitones = int(max_semitones)

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pitched = _rows_of_type(window, events.NOTE_ON, events.NOTE_OFF) & (window[:, CHANNEL] != events.DRUM_CHANNEL)
        if not pitched.any():
            return window
        notes = window[pitched, NOTE]
        lowest = max(-self.max_semitones, -int(notes.min()))
        highest = min(self.max_semitones, 127 - int(notes.max()))
        window = window.copy()
        window[pitched, NOTE] += rng.integers(lowest, highest + 1)
        return window


@AUGMENTS.register("velocity")
class Velocity:
    """Play the window louder or softer: velocity * scale + offset on note_on rows, clamped to 1..127.

    scale is drawn uniformly from [min_scale, max_scale], offset as an integer from
    [-max_offset, max_offset], once per window (one performance, one dynamic change).
    """

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.2, max_offset: int = 10):
        if not 0 < min_scale <= max_scale:
            raise ConfigError(f"data.augment: need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale, self.max_offset = float(min_scale), float(max_scale), int(max_offset)

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = rng.uniform(self.min_scale, self.max_scale)
        offset = rng.integers(-self.max_offset, self.max_offset + 1)
        note_on = _rows_of_type(window, events.NOTE_ON)
        window = window.copy()
        louder = np.rint(window[note_on, VELOCITY] * scale) + offset
        window[note_on, VELOCITY] = np.clip(louder, 1, 127)  # 0 would turn a note-on into a note-off
        return window


@AUGMENTS.register("tempo")
class TempoStretch:
    """Play the window slower or faster: every row's `time` gap is stretched by one random factor.

    The factor is drawn log-uniformly from [min_factor, max_factor] (so 0.8 and 1.25 are equally
    likely). The stretch is applied to the running position, then rounded to the grid, so rounding
    errors never accumulate along the window. A stretched gap longer than MAX_TIME_SHIFT is cut to
    MAX_TIME_SHIFT (the window keeps its row count, so batches keep their shape): with factors near 1
    only rests close to a full time-shift row are shortened, and everything after moves earlier by
    the cut. Tempo rows are left as they are: the music is played at a different speed, it does not
    carry a different tempo marking.
    """

    def __init__(self, min_factor: float = 0.9, max_factor: float = 1.1):
        if not 0 < min_factor <= max_factor:
            raise ConfigError(f"data.augment: need 0 < min_factor <= max_factor, got {min_factor}, {max_factor}")
        self.min_factor, self.max_factor = float(min_factor), float(max_factor)

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        factor = math.exp(rng.uniform(math.log(self.min_factor), math.log(self.max_factor)))
        real = window[:, TYPE] != events.IGNORE
        position = np.cumsum(window[real, TIME])
        stretched = np.rint(position * factor).astype(np.int64)
        gaps = np.diff(stretched, prepend=0)
        window = window.copy()
        window[real, TIME] = np.clip(gaps, 0, events.MAX_TIME_SHIFT)
        return window


@AUGMENTS.register("all")
class AllAugments:
    """transpose, then velocity, then tempo, each with its own options (a mapping of them)."""

    def __init__(self, transpose: dict | None = None, velocity: dict | None = None, tempo: dict | None = None):
        self.steps = [Transpose(**(transpose or {})), Velocity(**(velocity or {})), TempoStretch(**(tempo or {}))]

    def __call__(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            window = step(window, rng)
        return window
