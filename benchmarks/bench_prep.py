"""Corpus preparation speed against MidiTok's REMI tokenizer, both in one process on the same files.

    make bench-prep                       # the dev corpus, ../shared/data/midi_dev
    python benchmarks/bench_prep.py --root DIR [--workers N]

midiformer: the whole preparation (find, read, encode, split, write the store) into a fresh cache
folder. MidiTok: read each file with symusic and tokenize it with REMI (default TokenizerConfig).
Printed, never asserted: timings depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = Path(os.environ.get("MIDIFORMER_DEV_DATA", REPO.parent / "shared" / "data" / "midi_dev"))


def bench_midiformer(root: Path, workers: int) -> dict[str, float]:
    from midiformer.data.store import Store, prepare_store

    with tempfile.TemporaryDirectory() as cache_dir:
        cfg = OmegaConf.create({"name": "midi_dir", "root": str(root), "cache_dir": cache_dir,
                                "codec": {"ticks_per_beat": 96, "controls": [], "pitch_bend": False},  # as MidiTok's REMI
                                "splits": {"train": 0.9, "val": 0.05, "test": 0.05}, "num_workers": workers})
        start = time.perf_counter()
        manifest = Store(prepare_store(cfg)).manifest
        seconds = time.perf_counter() - start
    return {"files": manifest["files_ok"], "notes": manifest["notes"], "events": manifest["events"], "seconds": seconds}


def bench_miditok(root: Path) -> dict[str, float]:
    from miditok import REMI, TokenizerConfig
    from symusic import Score

    from midiformer.data.corpus import find_midi_files

    tokenizer = REMI(TokenizerConfig())
    files, notes, tokens = 0, 0, 0
    start = time.perf_counter()
    for relative_path in find_midi_files(root):
        score = Score(root / relative_path)
        sequences = tokenizer.encode(score)
        sequences = sequences if isinstance(sequences, list) else [sequences]  # one per track, or one stream
        files, notes, tokens = files + 1, notes + score.note_num(), tokens + sum(len(s.ids) for s in sequences)
    return {"files": files, "notes": notes, "events": tokens, "seconds": time.perf_counter() - start}


def row(name: str, r: dict[str, float]) -> str:
    s = r["seconds"]
    return (f"{name:<28} {r['files']:>6} {r['notes']:>9,} {r['events']:>10,} {s:>8.2f} "
            f"{r['files'] / s:>9.1f} {r['notes'] / s:>11,.0f} {r['events'] / s:>11,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEV_DATA, help="folder of MIDI files (default: the dev corpus)")
    parser.add_argument("--workers", type=int, default=1, help="midiformer encoding processes (default 1, as MidiTok)")
    args = parser.parse_args()
    if not args.root.is_dir():
        sys.exit(f"error: --root {args.root}: not a folder (set MIDIFORMER_DEV_DATA or pass --root)")
    logging.basicConfig(level=logging.WARNING)  # the skipped-file warnings, if any
    ours = bench_midiformer(args.root, args.workers)
    theirs = bench_miditok(args.root)
    print(f"\ncorpus: {args.root}")
    print(f"{'':<28} {'files':>6} {'notes':>9} {'events':>10} {'seconds':>8} {'files/s':>9} {'notes/s':>11} "
          f"{'events/s':>11}")
    print(row(f"midiformer prepare ({args.workers} proc)", ours))
    print(row("MidiTok REMI (1 proc)", theirs))
    ratio = (ours["notes"] / ours["seconds"]) / (theirs["notes"] / theirs["seconds"])
    print(f"\nnotes/s ratio midiformer / MidiTok: {ratio:.2f}x (target: at least 2x)")


if __name__ == "__main__":
    main()
