"""How close a decoded file plays to its original, in seconds: encode + decode every file of a folder
and compare every note's onset and offset with mido's reading of the original.

    python benchmarks/bench_codec_seconds.py [--root DIR] [--ticks-per-beat 96]

Prints, over every note of every file: the share whose onset is within 1 ms / 20 ms of the original,
the share whose onset and offset both are, the largest error, and the share within the grid's own
bound (half a grid step at the slowest tempo within a step, + 1 ms). Run it with PYTHONPATH pointing at another
checkout to measure that checkout's codec (it only calls events.encode(path) and decode(rows, path)).
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from midiformer.codec import events

try:
    from midiformer.codec.to_midi import decode
except ImportError:  # a checkout from before codec version 4, where events.py decoded
    decode = events.decode

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mido_oracle", REPO / "tests" / "codec" / "mido_oracle.py")
mido_oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mido_oracle)


def grid_bound(beats: np.ndarray, tempo_beats: np.ndarray, tempo_us: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    """Half a grid step in seconds at the tempo of each time: the slowest tempo in force within one grid
    step of it (a tempo change off the grid lands on a step next to its place, so near one the tempo
    of either side may hold)."""
    step = 1.0 / ticks_per_beat
    slowest = np.zeros(len(beats))
    for offset in (-step, 0.0, step):
        index = np.searchsorted(tempo_beats, beats + offset, side="right") - 1
        slowest = np.maximum(slowest, np.where(index >= 0, tempo_us[np.maximum(index, 0)], 500_000))
    return 0.5 * step * slowest / 1e6


def errors(path: Path, folder: Path, ticks_per_beat: int) -> np.ndarray:
    """Per note: onset error, offset error (seconds), and the grid's bound at the onset and the offset."""
    decoded = folder / "decoded.mid"
    decode(events.encode(path), decoded)
    original, back = mido_oracle.read(path), mido_oracle.read(decoded)
    tempos = original["tempos"]
    tempo_beats = np.array([t[0] for t in tempos] or [0.0])
    tempo_us = np.array([t[2] for t in tempos] or [500_000])
    out = []
    for key, notes in original["notes"].items():
        a, b = np.array(notes, dtype=np.float64), np.array(back["notes"].get(key, []), dtype=np.float64)
        if len(a) != len(b):
            raise SystemExit(f"{path}: {len(a)} notes of channel/pitch {key} came back as {len(b)}")
        on_bound, off_bound = (grid_bound(a[:, k], tempo_beats, tempo_us, ticks_per_beat) + 1e-3 for k in (0, 1))
        out.append(np.stack([np.abs(a[:, 6] - b[:, 6]), np.abs(a[:, 7] - b[:, 7]), on_bound, off_bound], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO.parent.parent / "shared" / "data" / "midi_dev")
    parser.add_argument("--ticks-per-beat", type=int, default=96)
    args = parser.parse_args()
    root = args.root if args.root.is_dir() else Path("/work/shared/data/midi_dev")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    started = time.perf_counter()
    per_file = []
    with tempfile.TemporaryDirectory() as folder:
        for path in files:
            per_file.append((path, errors(path, Path(folder), args.ticks_per_beat)))
    e = np.concatenate([x for _, x in per_file])
    onset, offset = e[:, 0], e[:, 1]
    within_bound = (onset <= e[:, 2]) & (offset <= e[:, 3])
    worst_path, worst = max(((p, x[:, :2].max()) for p, x in per_file if len(x)), key=lambda t: t[1])
    print(f"codec {events.__file__}")
    print(f"{len(files)} files, {len(e):,} notes, {time.perf_counter() - started:.0f} s")
    print(f"onset within  1 ms: {100 * np.mean(onset <= 1e-3):.2f} %   within 20 ms: {100 * np.mean(onset <= 0.02):.2f} %")
    print(f"onset and offset within 1 ms: {100 * np.mean(np.maximum(onset, offset) <= 1e-3):.2f} %   "
          f"within 20 ms: {100 * np.mean(np.maximum(onset, offset) <= 0.02):.2f} %")
    print(f"onset and offset within half a grid step + 1 ms: {100 * np.mean(within_bound):.2f} %")
    print(f"largest error {1e3 * worst:.1f} ms ({worst_path.relative_to(root)}); "
          f"median {1e3 * np.median(onset):.2f} ms, 99th percentile {1e3 * np.quantile(onset, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
