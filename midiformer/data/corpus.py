"""A folder of MIDI files -> encoded songs, each assigned to a split: find, split, encode in parallel.

Nothing here writes to disk; store.py turns the encoded songs into a store.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
from tqdm import tqdm

from midiformer.codec import events
from midiformer.common import ConfigError

MIDI_SUFFIXES = {".mid", ".midi"}


def find_midi_files(root: str | Path) -> list[str]:
    """Relative POSIX paths of every *.mid / *.midi file under root (any case, any depth), sorted."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={root}: not a folder")
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    if not found:
        raise ConfigError(f"data.root={root}: no MIDI files (*.mid, *.midi) in this folder or below")
    return found


def check_splits(splits: Mapping[str, float]) -> dict[str, float]:
    splits = {str(name): float(share) for name, share in dict(splits).items()}
    if not splits or any(share < 0 for share in splits.values()) or abs(sum(splits.values()) - 1) > 1e-6:
        raise ConfigError(f"data.splits={splits}: shares must be >= 0 and sum to 1")
    return splits


def check_velocity_levels(levels: int | None) -> int | None:
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 127):
        raise ConfigError(f"data.velocity_levels={levels!r} must be null (every velocity kept) or an integer in 1..127")
    return levels


def velocity_bins(levels: int) -> np.ndarray:
    """MidiTok's velocity levels (linspace(0, 127, levels + 1)[1:], truncated): 3, 7, ..., 127 for 32."""
    return np.linspace(0, 127, levels + 1).astype(np.int64)[1:]


def round_velocities(song: np.ndarray, levels: int | None) -> np.ndarray:
    """Note-on velocities moved to the nearest of `levels` levels (the upper one on a tie, as MidiTok);
    None keeps every velocity. Only note_on rows: a tempo row keeps its tempo bits in that column."""
    if levels is None:
        return song
    bins = velocity_bins(levels)
    is_note_on = song[:, events.COLUMN["type"]] == events.NOTE_ON
    velocity = song[is_note_on, events.COLUMN["velocity"]].astype(np.int64)
    upper = np.minimum(np.searchsorted(bins, velocity), len(bins) - 1)
    lower = np.maximum(upper - 1, 0)
    nearest = np.where(velocity - bins[lower] < np.abs(bins[upper] - velocity), bins[lower], bins[upper])
    song = song.copy()
    song[is_note_on, events.COLUMN["velocity"]] = nearest
    return song


def split_of(relative_path: str, splits: Mapping[str, float]) -> str:
    """The split of a file, from a hash of its relative path alone: adding or removing other files never
    moves it. The hash maps the path to a point in [0, 1); the splits cover [0, 1) in config order."""
    point = int.from_bytes(hashlib.sha1(relative_path.encode()).digest()[:8], "big") / 2**64
    cumulative = 0.0
    for name, share in splits.items():
        cumulative += share
        if point < cumulative:
            return name
    return name  # rounding: the shares sum to 1 within 1e-6


@dataclass
class EncodedFile:
    """One file's result: events and stats, or the one-line reason it was skipped."""

    file: str
    events: np.ndarray | None = None
    stats: dict[str, float] = field(default_factory=dict)
    reason: str | None = None


def one_line(error: BaseException, path: Path) -> str:
    """The reason a file was skipped: the codec's own message (less the path, which the manifest has
    beside it), else the error's type and first line."""
    lines = str(error).replace(f"{path}: ", "").strip().splitlines()
    if isinstance(error, events.MidiError) and lines:
        return lines[0][:300]
    return f"{type(error).__name__}: {lines[0]}"[:300] if lines else type(error).__name__


def encode_file(job: tuple[str, str, dict, int | None]) -> EncodedFile:
    """Worker: encode one file. Any error skips the file with a reason; it never stops preparation."""
    root, relative_path, codec, velocity_levels = job
    path = Path(root) / relative_path
    try:
        song, stats = events.encode_song(path, **codec)
        song = round_velocities(song, velocity_levels)
        notes = events.count_notes(song)
        if notes == 0:
            return EncodedFile(relative_path, reason="no notes")
        stats = {**stats, "notes": notes, "seconds": events.seconds(song, codec["ticks_per_beat"])}
        return EncodedFile(relative_path, np.ascontiguousarray(song, dtype=np.int16), stats)
    except Exception as error:  # a corrupt file may fail anywhere in the reader: skip it, say why
        return EncodedFile(relative_path, reason=one_line(error, path))


def worker_count(num_workers: int | None, n_jobs: int) -> int:
    if num_workers is not None and num_workers < 1:
        raise ConfigError(f"data.num_workers={num_workers} must be >= 1 (or null for every core)")
    return max(1, min(num_workers or os.cpu_count() or 1, n_jobs))


def parallel_map(function: Callable, jobs: list, num_workers: int | None, desc: str, unit: str) -> Iterator:
    """function(job) for every job, in order, on `num_workers` processes (null: every core), with a
    progress bar. One worker runs in this process: no start-up cost, and easy to debug."""
    workers = worker_count(num_workers, len(jobs))
    desc = f"{desc} ({workers} worker{'s' if workers > 1 else ''})"
    with tqdm(total=len(jobs), desc=desc, unit=unit, dynamic_ncols=True) as progress:
        if workers == 1:
            yield from _counted(map(function, jobs), progress)
            return
        # spawn, not fork: the caller may hold torch's threads, which do not survive a fork
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            chunk = max(1, min(32, len(jobs) // (8 * workers)))  # amortizes messages, still balances load
            yield from _counted(pool.imap(function, jobs, chunksize=chunk), progress)


def _counted(results: Iterator, progress: tqdm) -> Iterator:
    for result in results:
        progress.update()
        yield result


def encode_files(root: str | Path, files: list[str], codec: Mapping, num_workers: int | None = None,
                 velocity_levels: int | None = None) -> Iterator[EncodedFile]:
    """Encode files in parallel with the codec settings `codec` (the keys of data.codec), yielding
    results in the order of `files`, so that a store does not depend on the worker count."""
    jobs = [(str(root), relative_path, dict(codec), velocity_levels) for relative_path in files]
    return parallel_map(encode_file, jobs, num_workers, "encode", "file")
