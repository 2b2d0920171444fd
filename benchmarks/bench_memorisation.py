"""Memorisation check at scale: build the n-gram index of a large training store once, then query it.

    python benchmarks/bench_memorisation.py --songs 20000        # a store of 20k songs from the dev corpus

The store is made of the dev corpus's songs repeated, each copy transposed by its own random amount
(-24..+24 semitones, drums left alone) and its gaps scaled by a random whole factor, so that copies do
not share n-grams; it is written like a prepared store (train_events.npy, train_offsets.npy,
manifest.json). Printed: store size, index build time and size, and the time per query of a
512-note continuation (a copied passage inside random notes: the check must find it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from midiformer.codec import events  # noqa: E402
from midiformer.generate.memorisation import MemorisationIndex, note_tokens  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV = Path(os.environ.get("MIDIFORMER_DEV_DATA", REPO.parent / "shared" / "data" / "midi_dev"))


def write_store(folder: Path, songs: int, seed: int) -> tuple[int, int]:
    files = sorted(DEV.rglob("*.mid"))
    if not files:
        sys.exit(f"error: no MIDI files in {DEV} (set MIDIFORMER_DEV_DATA)")
    encoded = [events.encode(f).astype(np.int16) for f in files]
    rng = np.random.default_rng(seed)
    offsets, rows_total, notes_total = [0], 0, 0
    with open(folder / "train_events.npy", "wb") as out:
        header = {"descr": "<i2", "fortran_order": False, "shape": (0, len(events.FIELDS))}
        np.lib.format.write_array_header_1_0(out, header)
        header_length = out.tell()
        for i in range(songs):
            song = encoded[i % len(encoded)].copy()
            melodic = np.isin(song[:, 0], (events.NOTE_ON, events.NOTE_OFF)) & (song[:, 2] != events.DRUM_CHANNEL)
            song[melodic, 4] = np.clip(song[melodic, 4] + rng.integers(-24, 25), 0, 127)
            song[:, 1] = np.minimum(song[:, 1] * rng.integers(1, 4), events.MAX_TIME_SHIFT)
            out.write(song.tobytes())
            rows_total += len(song)
            notes_total += events.count_notes(song)
            offsets.append(rows_total)
        out.seek(0)
        np.lib.format.write_array_header_1_0(out, {**header, "shape": (rows_total, len(events.FIELDS))})
        assert out.tell() == header_length
    np.save(folder / "train_offsets.npy", np.asarray(offsets, np.int64))
    manifest = {"splits": {"train": {"songs": songs, "events": rows_total, "notes": notes_total}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return rows_total, notes_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to write the store (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        rows, notes = write_store(folder, args.songs, args.seed)
        print(f"store: {args.songs:,} songs, {rows:,} events, {notes:,} notes "
              f"({(folder / 'train_events.npy').stat().st_size / 2**20:.0f} MiB), written in "
              f"{time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        index = MemorisationIndex(folder)
        build = time.perf_counter() - started
        size = sum(p.stat().st_size for p in index.folder.iterdir())
        print(f"index: built in {build:.1f} s, {index.info['entries']:,} entries, {size / 2**20:.0f} MiB on disk")
        rng = np.random.default_rng(args.seed + 1)
        store_rows, offsets = np.load(folder / "train_events.npy", mmap_mode="r"), np.load(folder / "train_offsets.npy")
        timings, found = [], []
        for _ in range(args.queries):
            song = int(rng.integers(0, args.songs))
            tokens = note_tokens(np.asarray(store_rows[offsets[song]:offsets[song + 1]]))
            start = int(rng.integers(0, max(len(tokens) - 64, 1)))
            noise = (rng.integers(1, 200, 448) << 8) | rng.integers(0, 128, 448)
            query = np.concatenate([noise[:200], tokens[start:start + 64], noise[200:]]).astype(np.int32)
            started = time.perf_counter()
            report = index.check(query)
            timings.append(time.perf_counter() - started)
            found.append(report["longest_run"] >= min(64, len(tokens) - start))
        print(f"query: 512-note continuation, median {np.median(timings) * 1e3:.1f} ms, max {max(timings) * 1e3:.1f} ms; "
              f"copied 64-note passage found in {sum(found)}/{len(found)}")


if __name__ == "__main__":
    main()
