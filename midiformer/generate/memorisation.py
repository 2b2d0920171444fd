"""Memorisation check: how much of a continuation is copied from the training store.

A song is read as its sequence of note events, each (pitch, onset step): the pitch (drum notes kept
apart from melodic ones) and the gap in grid steps since the previous note's onset, notes of one
onset ordered by pitch. For a continuation we report

    longest_run       the most consecutive note events of the continuation that also occur, one
                      after another, in one song of the training split;
    share_in_runs     the share of the continuation's note events covered by such runs of at least
                      MIN_RUN (16) events.

The index, built once per store and cached in the store's folder (`memorisation-n{N}-s{S}/`): the
training songs' note events as one int32 array (a -1 between songs, so no run crosses a boundary),
and the 64-bit hashes of the N-grams starting at every S-th position, sorted, with their positions.
A query hashes the N-gram at every position of the continuation, finds the hits by binary search,
checks each hit against the events themselves and extends it both ways. Every run of at least
N + S - 1 events contains an indexed N-gram, so it is found and measured exactly; shorter runs may
be missed (`exact_from` in the report). With N = 8, S = 8 the index holds one entry per 8 notes
(12 bytes): about 300 MB for 200 M training notes (a 100k-file store); a query is a few hundred
binary searches. An n-gram that occurs more than `max_hits` times in the store (a common drum bar, a
scale) is followed from its first `max_hits` indexed occurrences only, which keeps a query fast on
a large store; a run through such common material may then be measured shorter than it is.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.data.store import Store, temporary_folder_beside

log = logging.getLogger(__name__)

MIN_RUN = 16
SEPARATOR = -1
_BASE = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit multiplier (the golden ratio's): well-mixed hashes
_TYPE, _TIME, _CHANNEL, _NOTE = (events.COLUMN[f] for f in ("type", "time", "channel", "note"))
_MAX_GAP = (1 << 22) - 1  # gaps longer than this (over 10 hours at 96 steps per beat) count as equal
_CHUNK_ROWS = 4_000_000  # store rows read at a time while building


def note_tokens(rows: np.ndarray, ticks: np.ndarray | None = None) -> np.ndarray:
    """One int32 per note-on of `rows` (one song): (gap << 8) | (is_drum << 7) | pitch, in onset order."""
    rows = np.asarray(rows)
    ticks = events.grid_ticks(rows) if ticks is None else np.asarray(ticks, np.int64)
    on = rows[:, _TYPE] == events.NOTE_ON
    return _tokens(ticks[on], rows[on, _NOTE].astype(np.int64), rows[on, _CHANNEL] == events.DRUM_CHANNEL)


def _tokens(onset: np.ndarray, pitch: np.ndarray, is_drum: np.ndarray, song: np.ndarray | None = None) -> np.ndarray:
    song = np.zeros(len(onset), np.int64) if song is None else song
    key = (pitch | (is_drum.astype(np.int64) << 7))
    order = np.lexsort((key, onset, song))
    onset, key, song = onset[order], key[order], song[order]
    gap = np.diff(onset, prepend=onset[:1])
    gap[np.r_[True, song[1:] != song[:-1]][:len(gap)]] = 0  # a song's first note: no gap (and no notes: none)
    return ((np.minimum(gap, _MAX_GAP) << 8) | key).astype(np.int32)


def ngram_hashes(tokens: np.ndarray, n: int, starts: np.ndarray | None = None) -> np.ndarray:
    """uint64 hash of tokens[i:i+n] for every i in `starts` (default: every i; a wrapping polynomial hash)."""
    tokens = np.asarray(tokens).astype(np.int64).view(np.uint64)
    starts = np.arange(max(len(tokens) - n + 1, 0)) if starts is None else np.asarray(starts, np.int64)
    hashes = np.zeros(len(starts), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            hashes = hashes * _BASE + tokens[starts + j]
    return hashes


class MemorisationIndex:
    """The n-gram index of a store's training split (built on first use, then read from its folder)."""

    def __init__(self, store_path: str | Path, ngram: int = 8, stride: int = 8, split: str = "train",
                 max_hits: int = 256):
        if ngram < 2 or stride < 1 or max_hits < 1:
            raise ConfigError(f"memorisation: ngram={ngram} must be >= 2, stride={stride} and max_hits={max_hits} >= 1")
        self.store, self.ngram, self.stride, self.split = Store(store_path), ngram, stride, split
        self.max_hits = max_hits
        self.folder = self.store.path / f"memorisation-{split}-n{ngram}-s{stride}"
        if not (self.folder / "index.json").is_file():
            self.build()
        self.tokens = np.load(self.folder / "tokens.npy", mmap_mode="r")
        self.hashes = np.load(self.folder / "hashes.npy", mmap_mode="r")
        self.positions = np.load(self.folder / "positions.npy", mmap_mode="r")
        self.info = json.loads((self.folder / "index.json").read_text())

    @property
    def exact_from(self) -> int:
        """Runs at least this long are always found (and measured exactly)."""
        return self.ngram + self.stride - 1

    def build(self) -> None:
        """Tokens of every training song, then the sorted hashes of every stride-th n-gram; written into a
        temporary folder and renamed into place, so a crash never leaves half an index."""
        rows, offsets = self.store.events(self.split), self.store.offsets(self.split)
        log.info("building the memorisation index of %s (%d songs), once", self.store.path, len(offsets) - 1)
        temporary = temporary_folder_beside(self.folder)
        try:
            parts, song = [], 0
            while song < len(offsets) - 1:  # whole songs, about _CHUNK_ROWS rows at a time
                last = max(int(np.searchsorted(offsets, offsets[song] + _CHUNK_ROWS, side="right")) - 1, song + 1)
                parts.append(_chunk_tokens(np.asarray(rows[offsets[song]:offsets[last]]), offsets[song:last + 1]))
                song = last
            tokens = np.concatenate(parts) if parts else np.zeros(0, np.int32)
            starts = np.arange(0, max(len(tokens) - self.ngram + 1, 0), self.stride)
            hashes = ngram_hashes(tokens, self.ngram, starts)
            no_separator = _window_min(tokens, self.ngram, starts) != SEPARATOR
            hashes, starts = hashes[no_separator], starts[no_separator]
            order = np.argsort(hashes, kind="stable")
            np.save(temporary / "tokens.npy", tokens)
            np.save(temporary / "hashes.npy", hashes[order])
            np.save(temporary / "positions.npy", starts[order].astype(np.int64))
            info = {"split": self.split, "ngram": self.ngram, "stride": self.stride, "songs": len(offsets) - 1,
                    "notes": int((tokens != SEPARATOR).sum()), "entries": len(order)}
            (temporary / "index.json").write_text(json.dumps(info, indent=1) + "\n")  # last: marks it complete
            try:
                os.rename(temporary, self.folder)
            except OSError:  # another process built it first: the same index
                shutil.rmtree(temporary, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    def matching_runs(self, query: np.ndarray) -> np.ndarray:
        """(len(query),) int: the longest run starting at each position that occurs in a training song
        (exact where >= exact_from; 0 where no indexed n-gram was hit)."""
        query = np.asarray(query, np.int32)
        longest = np.zeros(len(query), np.int64)
        hashes = ngram_hashes(query, self.ngram)
        if not len(hashes) or not len(self.hashes):
            return longest
        left = np.searchsorted(self.hashes, hashes, side="left")
        right = np.searchsorted(self.hashes, hashes, side="right")
        covered_to: dict[int, int] = {}  # diagonal (train position - query position) -> end of its last run
        for i in np.nonzero(right > left)[0].tolist():
            for p in np.asarray(self.positions[left[i]:min(right[i], left[i] + self.max_hits)]).tolist():
                if covered_to.get(p - i, -1) > i:
                    continue  # inside a run already measured
                start, end = self._extend(query, i, p)
                covered_to[p - i] = max(end, i + 1)
                longest[start:end] = np.maximum(longest[start:end], end - np.arange(start, end))
        return longest

    def _extend(self, query: np.ndarray, i: int, p: int) -> tuple[int, int]:
        """The query span [start, end) equal to the training tokens on the diagonal through (i, p)."""
        if not np.array_equal(query[i:i + self.ngram], self.tokens[p:p + self.ngram]):
            return i, i  # a hash collision
        start = i
        while start > 0 and p - (i - start) - 1 >= 0 and self.tokens[p - (i - start) - 1] == query[start - 1]:
            start -= 1
        end = i + self.ngram
        while end < len(query) and p + (end - i) < len(self.tokens) and self.tokens[p + (end - i)] == query[end]:
            end += 1
        return start, end

    def check(self, query: np.ndarray, min_run: int = MIN_RUN) -> dict:
        """longest_run and share_in_runs (runs >= min_run) of a continuation's note tokens."""
        runs = self.matching_runs(query)
        covered = np.zeros(len(query), bool)
        for start in np.nonzero(runs >= min_run)[0].tolist():
            covered[start:start + runs[start]] = True
        return {"notes": len(query), "longest_run": int(runs.max()) if len(runs) else 0,
                "share_in_runs": float(covered.mean()) if len(query) else 0.0, "min_run": min_run,
                "exact_from": self.exact_from, "store": str(self.store.path), "split": self.split}


def _chunk_tokens(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Tokens of the songs rows[offsets[k] - offsets[0]:offsets[k + 1] - offsets[0]], each followed by SEPARATOR."""
    local = offsets - offsets[0]
    song_of_row = np.repeat(np.arange(len(local) - 1), np.diff(local))
    ticks = np.cumsum(rows[:, _TIME].astype(np.int64))
    ticks -= np.concatenate([[0], ticks[local[1:-1] - 1]])[song_of_row]  # each song's clock starts at 0
    on = rows[:, _TYPE] == events.NOTE_ON
    song = song_of_row[on]
    tokens = _tokens(ticks[on], rows[on, _NOTE].astype(np.int64), rows[on, _CHANNEL] == events.DRUM_CHANNEL, song)
    # a SEPARATOR after each song: song k's notes are followed by k + 1 separators so far
    notes_per_song = np.bincount(song, minlength=len(local) - 1)
    out = np.full(len(tokens) + len(notes_per_song), SEPARATOR, np.int32)
    out[np.arange(len(tokens)) + np.repeat(np.arange(len(notes_per_song)), notes_per_song)] = tokens
    return out


def _window_min(tokens: np.ndarray, n: int, starts: np.ndarray) -> np.ndarray:
    """min(tokens[i:i+n]) for every i in `starts`: SEPARATOR where a window holds a song boundary."""
    low = np.full(len(starts), np.iinfo(np.int32).max, np.int64)
    for j in range(n):
        low = np.minimum(low, tokens[starts + j])
    return low
