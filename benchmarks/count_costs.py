"""Count-table code lengths of time and velocity on a prepared store: what simple models pay, per note.

    python benchmarks/count_costs.py STORE_FOLDER        # e.g. outputs/bench_quality/cache/stores/midi_dev-...

Each cost is a count table learned on the train split (add-half smoothing) and scored on the test
split, in bits per note: velocity alone and given the previous velocity on the same channel; the gap
of every row as the codec writes it; and, for a codec that would put durations on note-ons, the gap
between onsets plus the duration. They bound what the fields cost a model that knows no more.

Song-adaptive tables (IDyOM's short-term model, what `model/heads=cascade_cache` learns to use): a note-on's
pitch, velocity and duration scored by how often its channel played each value so far in its song, after
the same `order` values before on the channel, backing off to the shorter context and at the end to the
train split's unigram (each step with a pseudo-count).

The finer levels (`--grid 8 --velocities 32`, bench-quality's matched resolution): a value's place
within its coarse bin, given the bin (and, for velocity, the place of the channel's last one). That is
what full resolution costs a count table above the coarse value: bench-quality's two midiformer sides
differ by what the model pays for the same.
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


def sequences(song: np.ndarray, time_bin: int = 12, velocity_bin: int = 4) -> dict[str, list]:
    """(context, value) pairs of one song for each count model; `time_bin` grid steps and `velocity_bin`
    velocities make one coarse bin of the finer-level models."""
    pairs = defaultdict(list)
    last_velocity, last_place, sounding, onsets, tick, last_onset = {}, {}, defaultdict(deque), [], 0, 0
    for row in song[1:]:  # after START
        tick += int(row[events.TIME])
        pairs["row gap"].append((0, int(row[events.TIME])))
        kind, channel, note = int(row[events.TYPE]), int(row[events.CHANNEL]), int(row[events.NOTE])
        if kind == events.NOTE_ON:
            velocity = int(row[events.VELOCITY])
            pairs["velocity"].append((0, velocity))
            pairs["velocity | previous on the channel"].append((last_velocity.get(channel, -1), velocity))
            last_velocity[channel] = velocity
            bin_, place = divmod(velocity - 1, velocity_bin)
            pairs["velocity within its bin | the bin"].append((bin_, place))
            pairs["velocity within its bin | the bin, the channel's last"].append(((bin_, last_place.get(channel, -1)), place))
            last_place[channel] = place
            pairs["onset gap"].append((0, tick - last_onset))
            pairs["onset gap within its bin | the bin"].append(divmod(tick - last_onset, time_bin))
            last_onset = tick
            if row[events.DURATION] == events.OPEN:
                sounding[channel, note].append(len(onsets))
            else:  # the codec coded it on the note-on
                pairs["duration"].append((0, int(row[events.DURATION]) - 1))
            onsets.append(tick)
        elif kind == events.NOTE_OFF and sounding[channel, note]:
            pairs["duration"].append((0, tick - onsets[sounding[channel, note].popleft()]))
    pairs["duration within its bin | the bin"] = [divmod(steps, time_bin) for _, steps in pairs["duration"]]
    return pairs


def cost_bits(train: list, test: list, alpha: float = 0.5) -> float:
    """Summed bits of `test` under the conditional count table of `train`."""
    joint, context = Counter(train), Counter(c for c, _ in train)
    values = len({v for _, v in train} | {v for _, v in test})
    return sum(-math.log2((joint[c, v] + alpha) / (context[c] + alpha * values)) for c, v in test)


def song_cache_bits(train: list[np.ndarray], test: list[np.ndarray], column: int, order: int,
                    prior_weight: float = 4.0, backoff_weight: float = 2.0) -> float:
    """Summed bits of the column's note-on values of `test` under the song-adaptive table of `order`."""
    values = np.concatenate([song[song[:, events.TYPE] == events.NOTE_ON, column] for song in train])
    unigram = np.bincount(values, minlength=events.VOCAB[events.FIELDS[column]]) + 0.5
    unigram = unigram / unigram.sum()
    bits = 0.0
    for song in test:
        counts, totals, history = defaultdict(Counter), Counter(), defaultdict(list)
        for row in song[song[:, events.TYPE] == events.NOTE_ON]:
            channel, value = int(row[events.CHANNEL]), int(row[column])
            p = unigram[value]
            for n in range(order + 1):  # back off from the longest context to the channel's plain counts
                if len(history[channel]) < n:
                    break
                key = (channel, tuple(history[channel][len(history[channel]) - n:]))
                weight = prior_weight if n == 0 else backoff_weight
                p = (counts[key][value] + weight * p) / (totals[key] + weight)
            bits -= math.log2(p)
            for n in range(order + 1):
                if len(history[channel]) >= n:
                    key = (channel, tuple(history[channel][len(history[channel]) - n:]))
                    counts[key][value] += 1
                    totals[key] += 1
            history[channel].append(value)
    return bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--grid", type=int, default=8, help="coarse grid steps per beat of the finer-level models")
    parser.add_argument("--velocities", type=int, default=32, help="coarse velocity levels of the finer-level models")
    args = parser.parse_args()
    store = Store(args.store)
    ticks_per_beat = int(store.manifest["settings"]["codec"]["ticks_per_beat"])
    if args.grid <= 0 or ticks_per_beat % args.grid or args.velocities <= 0 or 128 % args.velocities:
        parser.error(f"--grid {args.grid} must divide the store's {ticks_per_beat} steps per beat and "
                     f"--velocities {args.velocities} must divide 128")
    split_pairs = {}
    for split in ("train", "test"):
        split_pairs[split] = defaultdict(list)
        for song in songs(store, split):
            for name, pairs in sequences(song, ticks_per_beat // args.grid, 128 // args.velocities).items():
                split_pairs[split][name] += pairs
    notes = len(split_pairs["test"]["velocity"])
    print(f"{args.store}: test split, {notes:,} notes; count tables of the train split; finer levels within "
          f"{args.grid} steps per beat and {args.velocities} velocities")
    for name in ("velocity", "velocity | previous on the channel", "row gap", "onset gap", "duration",
                 "velocity within its bin | the bin", "velocity within its bin | the bin, the channel's last",
                 "onset gap within its bin | the bin", "duration within its bin | the bin"):
        bits = cost_bits(split_pairs["train"][name], split_pairs["test"][name])
        print(f"  {name:56} {bits / notes:6.2f} bits/note   ({bits / len(split_pairs['test'][name]):.2f} per value)")
    train_songs, test_songs = songs(store, "train"), songs(store, "test")
    for column in (events.NOTE, events.VELOCITY, events.DURATION):
        for order in (0, 2):
            bits = song_cache_bits(train_songs, test_songs, column, order)
            name = f"{events.FIELDS[column]}, the song's counts on its channel, order {order}"
            print(f"  {name:56} {bits / notes:6.2f} bits/note")


if __name__ == "__main__":
    main()
