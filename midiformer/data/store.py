"""The prepared store: per split, one flat memory-mappable events array plus per-song offsets.

    <data.cache_dir>/stores/<name>-<key>/
        manifest.json                 codec version and settings, counts, field counts, skipped files (written last)
        train_events.npy              int16 (N, len(FIELDS)): every song of the split, one after another
        train_offsets.npy             int64 (songs + 1,): song i is rows offsets[i]:offsets[i + 1]
        train_songs.txt               the relative path of each song, one a line
        val_* test_*                  the same for the other splits

The key hashes the inputs (relative paths, sizes, modification times), the codec version and its
settings (data.codec: ticks_per_beat, controls, pitch_bend) and the splits: the
same inputs reuse the store, any change builds a new one. A store is built in a temporary folder and
renamed into place at the end, so an interrupted preparation never leaves a store that looks complete.

Field counts: for every split and field, how often each value occurs on the rows where the field
applies (events.APPLIES), counted while the store is written. The unigram baseline of train and
evaluate is computed from them, so no start-up ever reads a whole split (Lakh: billions of rows).
"""
from __future__ import annotations

import array
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from omegaconf import OmegaConf

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.data import corpus
from midiformer.data.atomic import temporary_folder_beside
from midiformer.data.sources import data_source

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
COUNTS = ("songs", "events", "notes", "seconds")
STORE_FORMAT = 2  # bump when the files or the manifest of a store change: 2 added the field counts


def field_counts(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per field, int64 counts of each value (length VOCAB[field]) over the rows where the field applies."""
    rows = np.asarray(rows)
    applies = events.APPLIES[rows[:, 0]]
    return {field: np.bincount(rows[applies[:, column], column], minlength=events.VOCAB[field]).astype(np.int64)
            for column, field in enumerate(events.FIELDS)}


class SplitWriter:
    """Appends the songs of one split straight to its .npy file, so a corpus never has to fit in memory.

    numpy pads a .npy header so that the row count can grow in place: the header is written for 0 rows,
    songs are appended, and the header is rewritten with the final count (same length) at the end.
    """

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        self.file = open(folder / f"{split}_events.npy", "wb")
        self.header_length = self._write_header(0)
        # offsets as packed int64 and song names straight to disk: a million songs cost 8 MB, not a list of objects
        self.offsets = array.array("q", [0])
        self.songs = open(folder / f"{split}_songs.txt", "w")
        self.counts = dict.fromkeys(COUNTS, 0)
        self.field_counts = {field: np.zeros(size, np.int64) for field, size in events.VOCAB.items()}

    def _write_header(self, rows: int) -> int:
        self.file.seek(0)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int16)), "fortran_order": False,
                  "shape": (rows, len(events.FIELDS))}
        np.lib.format.write_array_header_1_0(self.file, header)
        return self.file.tell()

    def add(self, song: corpus.EncodedFile) -> None:
        self.file.write(song.events.tobytes())
        self.offsets.append(self.offsets[-1] + len(song.events))
        self.songs.write(f"{song.file}\n")
        for field, counts in field_counts(song.events).items():
            self.field_counts[field] += counts
        self.counts["songs"] += 1
        self.counts["events"] += len(song.events)
        self.counts["notes"] += int(song.stats["notes"])
        self.counts["seconds"] += float(song.stats["seconds"])

    def close(self) -> dict[str, float]:
        self.file.flush()
        if self._write_header(self.offsets[-1]) != self.header_length:
            raise RuntimeError("numpy's .npy header changed length; the store cannot be written in place")
        self.file.close()
        self.songs.close()
        np.save(self.folder / f"{self.split}_offsets.npy", np.frombuffer(self.offsets, dtype=np.int64))
        return {**self.counts, "seconds": round(self.counts["seconds"], 3),
                "field_counts": {field: counts.tolist() for field, counts in self.field_counts.items()}}


class Store:
    """A prepared store, read-only: Store(path).events("train") is a memory map, not a copy."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / MANIFEST).is_file():
            raise FileNotFoundError(f"{self.path}: not a prepared store (no {MANIFEST}); prepare it first")
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())

    def _check(self, split: str) -> None:
        if split not in self.manifest["splits"]:
            raise KeyError(f"{self.path}: no split {split!r}; it has {', '.join(self.manifest['splits'])}")

    def events(self, split: str) -> np.ndarray:
        self._check(split)
        return np.load(self.path / f"{split}_events.npy", mmap_mode="r")

    def offsets(self, split: str) -> np.ndarray:
        self._check(split)
        return np.load(self.path / f"{split}_offsets.npy")

    def songs(self, split: str) -> list[str]:
        self._check(split)
        return (self.path / f"{split}_songs.txt").read_text().splitlines()

    def field_counts(self, split: str) -> dict[str, np.ndarray]:
        """The split's field counts (see the module doc), from the manifest: no row is read."""
        self._check(split)
        counts = self.manifest["splits"][split].get("field_counts")
        if counts is None:  # cannot come from prepare_store: STORE_FORMAT is part of the key
            raise FileNotFoundError(f"{self.path}: a store without field counts (made before store format "
                                    f"{STORE_FORMAT}); prepare it again")
        return {field: np.asarray(counts[field], dtype=np.int64) for field in events.FIELDS}

    def target_counts(self, split: str) -> tuple[dict[str, np.ndarray], int, int]:
        """Field counts, events and notes of the split's evaluation targets: every row but its first
        (dataset.eval_batches). Reads that one row."""
        counts, first = self.field_counts(split), np.asarray(self.events(split)[:1])
        for field, first_counts in field_counts(first).items():
            counts[field] -= first_counts
        totals = self.manifest["splits"][split]
        return counts, int(totals["events"]) - len(first), int(totals["notes"]) - events.count_notes(first)


def store_key(root: Path, files: list[str], settings: Mapping[str, Any]) -> str:
    """A hash of what the store depends on: each file's relative path, size and modification time, and
    the codec version and settings. Reading metadata, not contents, keeps the check instant."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for relative_path in files:
        stat = (root / relative_path).stat()
        digest.update(f"{relative_path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_store(root: Path, files: list[str], settings: Mapping[str, Any], path: Path,
                num_workers: int | None) -> None:
    """Encode every file into a temporary folder beside `path`, then rename it into place."""
    temporary = temporary_folder_beside(path)
    try:
        writers = {split: SplitWriter(temporary, split) for split in settings["splits"]}
        skipped, oddities = [], {}
        for song in corpus.encode_files(root, files, settings["codec"], num_workers,
                                         settings.get("velocity_levels")):
            if song.reason is not None:
                log.warning("skipped %s: %s", song.file, song.reason)
                skipped.append({"file": song.file, "reason": song.reason})
                continue
            writers[corpus.split_of(song.file, settings["splits"])].add(song)
            for name, count in song.stats.items():
                if name not in COUNTS:
                    oddities[name] = oddities.get(name, 0) + count
        splits = {split: writer.close() for split, writer in writers.items()}
        manifest = make_manifest(root, settings, len(files), splits, skipped, oddities)
        (temporary / MANIFEST).write_text(manifest_json(manifest))  # last: marks it complete
        publish(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def publish(temporary: Path, path: Path) -> None:
    """Rename the finished store into place. If another process (another rank) got there first, its
    store has the same inputs: keep it and drop ours."""
    if path.exists() and not (path / MANIFEST).is_file():
        shutil.rmtree(path)  # an incomplete store: only a hand-made folder can look like this
    try:
        os.rename(temporary, path)
    except OSError:
        if not (path / MANIFEST).is_file():
            raise
        log.info("another process prepared %s first; using it", path)
        shutil.rmtree(temporary, ignore_errors=True)


def make_manifest(root: Path, settings: Mapping[str, Any], files_found: int, splits: dict[str, dict],
                  skipped: list[dict], oddities: dict[str, float]) -> dict[str, Any]:
    totals = {name: sum(split[name] for split in splits.values()) for name in COUNTS}
    return {
        "store_format": STORE_FORMAT,
        "codec_version": settings["codec_version"],
        "settings": {"codec": settings["codec"], "velocity_levels": settings.get("velocity_levels"),
                     "splits": settings["splits"]},
        "fields": list(events.FIELDS),
        "root": str(root),
        "files_found": files_found,
        "files_ok": files_found - len(skipped),
        "files_skipped": len(skipped),
        **totals,
        "seconds": round(totals["seconds"], 3),
        "splits": splits,
        "oddities": oddities,
        "skipped": skipped,
    }


def manifest_json(manifest: Mapping[str, Any]) -> str:
    """Indented JSON, with each list of numbers (a field's counts) on one line, so the file stays readable."""
    text = json.dumps(manifest, indent=2)
    return re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + re.sub(r",\s*", ", ", m.group(1)) + "]",
                  text) + "\n"


def summary(manifest: Mapping[str, Any]) -> str:
    per_split = " / ".join(f"{name} {split['songs']}" for name, split in manifest["splits"].items())
    return (f"{manifest['files_found']} files, {manifest['songs']} songs ({per_split}), {manifest['events']:,} events, "
            f"{manifest['notes']:,} notes, {manifest['seconds'] / 3600:.1f} h, {manifest['files_skipped']} skipped")


def codec_settings_of(data_cfg: Any) -> dict:
    """data.codec checked and in its one form (events.codec_settings): part of the store key."""
    codec = data_cfg.get("codec")
    if codec is None:
        raise ConfigError("data.codec is missing: add a data/codec choice (performance | seed) to the data config")
    return events.codec_settings(**OmegaConf.to_container(codec, resolve=True))


def prepare_store(data_cfg: Any) -> Path:
    """Find, encode, split and write the store for `data_cfg` (cfg.data), or reuse one; its path."""
    data_cfg = data_cfg if OmegaConf.is_config(data_cfg) else OmegaConf.create(dict(data_cfg))
    root, name = data_source(data_cfg)
    files = corpus.find_midi_files(root)
    settings = {"codec_version": events.CODEC_VERSION, "codec": codec_settings_of(data_cfg),
                "splits": corpus.check_splits(data_cfg.splits), "store_format": STORE_FORMAT}
    velocity_levels = corpus.check_velocity_levels(data_cfg.get("velocity_levels"))
    if velocity_levels is not None:  # only then: the stores of every lossless setting keep their keys
        settings["velocity_levels"] = velocity_levels
    path = Path(str(data_cfg.cache_dir)).expanduser() / "stores" / f"{name}-{store_key(root, files, settings)}"
    if (path / MANIFEST).is_file():
        log.info("reusing the prepared store %s (same files and codec settings): %s", path,
                 summary(Store(path).manifest))
        return path
    log.info("preparing %d MIDI files from %s into %s", len(files), root, path)
    build_store(root, files, settings, path, data_cfg.get("num_workers"))
    log.info("prepared %s: %s", path, summary(Store(path).manifest))
    return path
