"""Batches of event windows from a prepared split: random training windows, exhaustive evaluation.

A window is seq_len + 1 consecutive rows of a split's flat events array (songs follow each other,
each from its start row to its end row): the model reads rows [0, T) and predicts rows [1, T].

Training: the global batch of a step is a pure function of (seed, step), with no sampler state, so a
resumed run sees exactly the batches it would have seen, and every rank computes the same global
batch and keeps its own slice of rows (no DistributedSampler needed).

Evaluation: window k holds rows [kT, kT + T], so every row but the split's first is a target exactly
once; bits per event on a split is then well defined and independent of batch size and rank count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from midiformer.codec import events
from midiformer.codec.grammar import SongStart, StateTracker
from midiformer.common import ConfigError

Augment = Callable[..., np.ndarray]  # (window, rng, before) -> window: see augment.py

SONG_START_FRACTION = 0.125  # share of training windows that begin on a song's start row (see train_batch)
_AUGMENT_STREAM = 1  # keeps the per-row augmentation generators apart from the window-start one
_APPLIES = torch.from_numpy(events.APPLIES)


@dataclass
class Batch:
    """Windows of seq_len + 1 rows, and the song state before each window's first row (which notes sound,
    each channel's program: what the grammar-masked likelihood needs from before the window)."""

    rows: torch.Tensor  # (B, T + 1, F) int64; padding rows are IGNORE
    start: SongStart

    def to(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, SongStart]:
        """(inputs (B, T, F), masked targets (B, T, F), start state) on `device`."""
        inputs, targets = split_inputs_targets(self.rows.to(device))
        return inputs, targets, self.start.to(device)


def rows_per_rank(batch_size: int, world_size: int, option: str = "data.batch_size") -> int:
    if batch_size <= 0 or batch_size % world_size:
        raise ConfigError(f"{option}={batch_size} must be a positive multiple of the world size {world_size}")
    return batch_size // world_size


def window_starts(offsets: np.ndarray, n_rows: int, rng: np.random.Generator, batch_size: int,
                  seq_len: int) -> np.ndarray:
    """Random first rows of `batch_size` windows; some are snapped to the first row of a random song.

    Uniform offsets almost never hit a song's first row, yet generation starts from one: snapping a
    fixed share of windows there teaches the model how songs begin, at position 0.
    """
    last_start = n_rows - (seq_len + 1)
    if last_start < 0:
        raise ConfigError(f"data.seq_len={seq_len}: the split has only {n_rows} events, fewer than seq_len + 1")
    starts = rng.integers(0, last_start + 1, size=batch_size)
    song_starts = offsets[rng.integers(0, len(offsets) - 1, size=batch_size)]
    snap = rng.random(batch_size) < SONG_START_FRACTION
    return np.where(snap, np.minimum(song_starts, last_start), starts)


def train_batch(events_array: np.ndarray, offsets: np.ndarray, step: int, *, seed: int, batch_size: int,
                seq_len: int, augment: Augment | None = None, rank: int = 0, world_size: int = 1) -> Batch:
    """This rank's windows of the global training batch of `step`: rows (batch_size // world_size, seq_len + 1, F)."""
    per_rank = rows_per_rank(batch_size, world_size)
    rng = np.random.default_rng([seed, step])
    starts = window_starts(offsets, len(events_array), rng, batch_size, seq_len)[rank * per_rank:(rank + 1) * per_rank]
    windows = np.stack([events_array[start:start + seq_len + 1].astype(np.int64) for start in starts])
    start_state = SongStart.before(events_array, offsets, starts)  # of the stored rows: augmentations keep it true
    if augment is not None:
        for i in range(per_rank):
            row = rank * per_rank + i
            before = (start_state.sounding[i].numpy(), start_state.programs[i].numpy())
            windows[i] = augment(windows[i], np.random.default_rng([seed, step, _AUGMENT_STREAM, row]), before)
    return Batch(torch.from_numpy(windows), start_state)


def eval_window_count(n_rows: int, seq_len: int) -> int:
    return -(-(n_rows - 1) // seq_len) if n_rows > 1 else 0  # ceil((n_rows - 1) / seq_len)


def eval_window(events_array: np.ndarray, k: int, seq_len: int) -> np.ndarray:
    """Rows [k*T, k*T + T] of the split, padded with IGNORE rows past its end (k past the last window: all IGNORE)."""
    window = np.full((seq_len + 1, len(events.FIELDS)), events.IGNORE, dtype=np.int64)
    rows = events_array[k * seq_len:k * seq_len + seq_len + 1]
    window[:len(rows)] = rows
    return window


def eval_batches(events_array: np.ndarray, batch_size: int, seq_len: int, *, offsets: np.ndarray | None = None,
                 rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """Every window of the split once, dealt round-robin to ranks (rank r: windows r, r + W, ...).

    batch_size is global (data.eval_batch_size); each rank yields (batch_size // world_size, seq_len + 1, F)
    batches, and every rank yields the same number of them (padding-only windows fill the gaps) so
    that collective all-reduces line up.
    """
    per_rank = rows_per_rank(batch_size, world_size, "data.eval_batch_size")
    if offsets is None:  # the songs' first rows, for the state before each window (a store keeps them)
        offsets = np.append(np.flatnonzero(np.asarray(events_array[:, 0]) == events.START), len(events_array))
    tracker = StateTracker(events_array, offsets)  # windows come in order: one pass over the split
    n_windows = eval_window_count(len(events_array), seq_len)
    windows_per_rank = -(-n_windows // world_size)
    for first in range(0, windows_per_rank, per_rank):
        ks = [(first + i) * world_size + rank for i in range(per_rank)]
        starts = np.minimum(np.array(ks) * seq_len, len(events_array) - 1)  # padding windows: any valid row
        yield Batch(torch.from_numpy(np.stack([eval_window(events_array, k, seq_len) for k in ks])),
                    tracker.before(starts))


def mask_targets(rows: torch.Tensor) -> torch.Tensor:
    """Set each field that does not apply to its row's type (events.APPLIES) to IGNORE; padding rows stay all IGNORE."""
    row_type = rows[..., 0]
    padding = row_type < 0
    applies = _APPLIES.to(rows.device)[row_type.clamp(min=0)] & ~padding.unsqueeze(-1)
    return torch.where(applies, rows, torch.full_like(rows, events.IGNORE))


def split_inputs_targets(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T + 1, F) windows -> inputs (B, T, F) with padding read as 0, and masked targets (B, T, F)."""
    return batch[:, :-1].clamp(min=0), mask_targets(batch[:, 1:])
