"""The vectorised note pairing (pair_notes_with_indices) against a plain first-in-first-out queue."""
from __future__ import annotations

import numpy as np
import pytest

from midiformer.codec import midi
from midiformer.codec.notes import pair_notes_with_indices


def queue_pairing(messages: midi.MidiMessages) -> tuple[list[tuple], dict[str, int]]:
    """The rule written as the obvious loop: a note-off ends the earliest sounding note of its key."""
    program, sounding, notes = [0] * 16, {}, []
    stats = {"orphan_note_offs": 0, "unterminated_notes": 0, "overlapping_notes": 0}
    for i, (tick, kind, channel, data1, data2) in enumerate(zip(
            messages.tick.tolist(), messages.kind.tolist(), messages.channel.tolist(),
            messages.data1.tolist(), messages.data2.tolist())):
        queue = sounding.setdefault((channel, data1), [])
        if kind == midi.NOTE_ON:
            stats["overlapping_notes"] += bool(queue)
            queue.append((tick, data2, program[channel], i))
        elif kind == midi.NOTE_OFF and queue:
            onset, velocity, instrument, on = queue.pop(0)
            notes.append((onset, tick, channel, data1, velocity, instrument, on, i))
        elif kind == midi.NOTE_OFF:
            stats["orphan_note_offs"] += 1
        elif kind == midi.PROGRAM_CHANGE:
            program[channel] = data1
    for (channel, pitch), queue in sounding.items():
        for onset, velocity, instrument, on in queue:
            notes.append((onset, messages.end_tick, channel, pitch, velocity, instrument, on, len(messages.tick)))
            stats["unterminated_notes"] += 1
    return sorted(notes, key=lambda n: (n[7], n[6])), stats


def random_messages(rng: np.random.Generator, n: int) -> midi.MidiMessages:
    # few channels and pitches, so that keys collide: overlaps, orphans and unterminated notes are common
    kind = rng.choice([midi.NOTE_ON, midi.NOTE_OFF, midi.PROGRAM_CHANGE, midi.CONTROL_CHANGE], n, p=[.45, .4, .1, .05])
    tick = np.cumsum(rng.integers(0, 3, n))
    return midi.MidiMessages(96, tick, kind, rng.integers(0, 3, n), rng.integers(60, 63, n), rng.integers(1, 128, n),
                             int(tick[-1]) + 5 if n else 0)


@pytest.mark.parametrize("seed", range(40))
def test_pairing_equals_a_fifo_queue(seed):
    messages = random_messages(np.random.default_rng(seed), int(np.random.default_rng(seed).integers(0, 200)))
    notes, programs, stats = pair_notes_with_indices(messages)
    expected, expected_stats = queue_pairing(messages)
    assert [tuple(row) for row in notes.tolist()] == expected
    assert {k: stats[k] for k in expected_stats} == expected_stats
    assert stats["notes"] == len(expected)
    assert programs[:, 3].tolist() == np.nonzero(messages.kind == midi.PROGRAM_CHANGE)[0].tolist()


def test_pairing_counts_what_the_stream_holds():
    on, off = midi.NOTE_ON, midi.NOTE_OFF
    # key (0, 60): off (orphan), on, on (overlap), off, off; key (1, 60): on, never ended
    kind = np.array([off, on, on, midi.PROGRAM_CHANGE, on, off, off])
    channel = np.array([0, 0, 0, 1, 1, 0, 0])
    data1 = np.array([60, 60, 60, 5, 60, 60, 60])
    messages = midi.MidiMessages(96, np.arange(7) * 10, kind, channel, data1, np.full(7, 90), 100)
    notes, _, stats = pair_notes_with_indices(messages)
    assert stats == {"orphan_note_offs": 1, "unterminated_notes": 1, "overlapping_notes": 1, "notes": 3,
                     "program_changes": 1}
    assert notes[:, [0, 1, 2, 5]].tolist() == [[10, 50, 0, 0], [20, 60, 0, 0], [40, 100, 1, 5]]


@pytest.mark.parametrize("seed", range(20))
def test_the_matcher_equals_a_queue_per_key_on_random_streams(seed):
    """match_first_in_first_out, which the codec, the primer cut and the metrics share: each end's start,
    each start's end, and how many of its key sound before each event, as a queue per key finds them."""
    from midiformer.codec.notes import match_first_in_first_out

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    key, is_start = rng.integers(0, 4, n), rng.random(n) < 0.55
    partner, sounding_before, queues = [-1] * n, [], {}
    for i, (k, start) in enumerate(zip(key.tolist(), is_start.tolist())):
        queue = queues.setdefault(k, [])
        sounding_before.append(len(queue))
        if start:
            queue.append(i)
        elif queue:
            begun = queue.pop(0)
            partner[i], partner[begun] = begun, i
    match = match_first_in_first_out(key, is_start)
    assert match.partner.tolist() == partner
    assert match.sounding_before.tolist() == sounding_before
