"""Count-table code lengths of time and velocity on a prepared store: what simple models pay, per note.

    python benchmarks/count_costs.py STORE_FOLDER        # e.g. outputs/bench_quality/cache/stores/midi_dev-...

Each cost is a count table learned on the train split (add-half smoothing) and scored on the test
split, in bits per note: velocity alone and given the previous velocity on the same channel; the gap
of every row as the codec writes it; and, for a codec that would put durations on note-ons, the gap
between onsets plus the duration. They bound what the fields cost a model that knows no more.
"""
from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict, deque

import numpy as np

from midiformer.codec import events
from midiformer.data.store import Store


def songs(store: Store, split: str):
    rows, offsets = np.asarray(store.events(split)).astype(np.int64), np.asarray(store.offsets(split))
    return [rows[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def sequences(song: np.ndarray) -> dict[str, list]:
    """(context, value) pairs of one song for each count model."""
    pairs = defaultdict(list)
    last_velocity, sounding, onsets, tick, last_onset = {}, defaultdict(deque), [], 0, 0
    for row in song[1:]:  # after START
        tick += int(row[events.TIME])
        pairs["row gap"].append((0, int(row[events.TIME])))
        kind, channel, note = int(row[events.TYPE]), int(row[events.CHANNEL]), int(row[events.NOTE])
        if kind == events.NOTE_ON:
            velocity = int(row[events.VELOCITY])
            pairs["velocity"].append((0, velocity))
            pairs["velocity | previous on the channel"].append((last_velocity.get(channel, -1), velocity))
            last_velocity[channel] = velocity
            pairs["onset gap"].append((0, tick - last_onset))
            last_onset = tick
            if row[events.DURATION] == events.OPEN:
                sounding[channel, note].append(len(onsets))
            else:  # the codec coded it on the note-on
                pairs["duration"].append((0, int(row[events.DURATION]) - 1))
            onsets.append(tick)
        elif kind == events.NOTE_OFF and sounding[channel, note]:
            pairs["duration"].append((0, tick - onsets[sounding[channel, note].popleft()]))
    return pairs


def cost_bits(train: list, test: list, alpha: float = 0.5) -> float:
    """Summed bits of `test` under the conditional count table of `train`."""
    joint, context = Counter(train), Counter(c for c, _ in train)
    values = len({v for _, v in train} | {v for _, v in test})
    return sum(-math.log2((joint[c, v] + alpha) / (context[c] + alpha * values)) for c, v in test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    args = parser.parse_args()
    store = Store(args.store)
    split_pairs = {}
    for split in ("train", "test"):
        split_pairs[split] = defaultdict(list)
        for song in songs(store, split):
            for name, pairs in sequences(song).items():
                split_pairs[split][name] += pairs
    notes = len(split_pairs["test"]["velocity"])
    print(f"{args.store}: test split, {notes:,} notes; count tables of the train split")
    for name in ("velocity", "velocity | previous on the channel", "row gap", "onset gap", "duration"):
        bits = cost_bits(split_pairs["train"][name], split_pairs["test"][name])
        print(f"  {name:38} {bits / notes:6.2f} bits/note   ({bits / len(split_pairs['test'][name]):.2f} per value)")


if __name__ == "__main__":
    main()
