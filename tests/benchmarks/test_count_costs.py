"""benchmarks/count_costs.py: the pairs each count model sees, and its code length."""
from __future__ import annotations

import math

import numpy as np
import pytest

from midiformer.codec import events


def row(kind, time, channel=0, note=0, velocity=0):
    values = {"type": kind, "time": time, "channel": channel, "note": note, "velocity": velocity}
    return [values.get(f, 0) for f in events.FIELDS]


def test_durations_onset_gaps_and_previous_velocities_come_from_the_rows():
    from count_costs import sequences

    song = np.array([row(events.START, 0),
                     row(events.NOTE_ON, 0, 0, 60, 80), row(events.NOTE_ON, 0, 1, 64, 50),
                     row(events.NOTE_ON, 24, 0, 60, 90),  # the same pitch again before the first ends
                     row(events.NOTE_OFF, 24, 0, 60), row(events.NOTE_OFF, 0, 1, 64), row(events.NOTE_OFF, 48, 0, 60),
                     row(events.END, 0)])
    pairs = sequences(song)
    assert [v for _, v in pairs["duration"]] == [48, 48, 72]  # first in, first out; channel 1's note 48
    assert [v for _, v in pairs["onset gap"]] == [0, 0, 24]
    assert pairs["velocity | previous on the channel"] == [(-1, 80), (-1, 50), (80, 90)]
    assert [v for _, v in pairs["row gap"]] == [0, 0, 24, 24, 0, 48, 0]
    # the finer levels: 12 steps and 4 velocities to a bin (velocity 80 is 79 = 19 * 4 + 3)
    assert pairs["velocity within its bin | the bin"] == [(19, 3), (12, 1), (22, 1)]
    assert pairs["velocity within its bin | the bin, the channel's last"] == [((19, -1), 3), ((12, -1), 1), ((22, 3), 1)]
    assert pairs["onset gap within its bin | the bin"] == [(0, 0), (0, 0), (2, 0)]
    assert pairs["duration within its bin | the bin"] == [(4, 0), (4, 0), (6, 0)]


def test_the_cost_is_the_smoothed_count_code_length():
    from count_costs import cost_bits

    train, test = [(0, 1), (0, 1), (0, 2)], [(0, 1), (0, 3)]
    # 3 values seen in all; p(1) = 2.5 / 4.5, p(3) = 0.5 / 4.5
    assert cost_bits(train, test) == pytest.approx(-math.log2(2.5 / 4.5) - math.log2(0.5 / 4.5))


def test_song_cache_bits_follow_the_song_and_its_contexts():
    """The song-adaptive table: its first note costs the unigram's price exactly; a phrase the song repeats
    costs less with the counts than a song that never repeats, and less again after the same two pitches."""
    from count_costs import song_cache_bits

    def song(pitches):
        return np.array([row(events.START, 0)] + [row(events.NOTE_ON, 12, 0, p, 80) for p in pitches] + [row(events.END, 0)])

    train = [song(range(40, 80))]  # one of each pitch: a flat unigram over 40..79
    unigram = 1.5 / (40 + 0.5 * 128)  # pitch 60's smoothed count over all 40 + 128 * 0.5
    assert song_cache_bits(train, [song([60])], events.NOTE, 0) == pytest.approx(-math.log2(unigram))
    repeated, fresh = song([60, 64, 67] * 10), song(range(40, 70))
    assert song_cache_bits(train, [repeated], events.NOTE, 0) < song_cache_bits(train, [fresh], events.NOTE, 0)
    assert song_cache_bits(train, [repeated], events.NOTE, 2) < song_cache_bits(train, [repeated], events.NOTE, 0)
