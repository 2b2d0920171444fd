"""Notes from MIDI messages: each note-on paired with the note-off that ends it.

A note-off ends the earliest sounding note of its channel and pitch (first in, first out), as
synthesizers do; the pairing is vectorised (one pass of numpy per file), because in a Python loop it
was 40 % of preparing a corpus.
"""
from __future__ import annotations

import numpy as np

from midiformer.codec import midi


def pair_notes(messages: midi.MidiMessages) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Notes as rows (onset, offset, channel, pitch, velocity, program) in file ticks.

    A note-off ends the earliest sounding note of its channel and pitch (first in, first out);
    a note-off with nothing sounding is ignored; a note still sounding at the end of the song is
    ended there. Program changes come back as rows (tick, channel, program).
    """
    notes, programs, stats = pair_notes_with_indices(messages)
    return notes[:, :6], programs[:, :3], stats


def pair_notes_with_indices(messages: midi.MidiMessages) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """pair_notes' rows, each followed by the index of its message(s) (notes: note-on, note-off), in the
    order the notes end in the file (the unterminated ones last, in the order they began).

    Vectorised first in, first out. For each (channel, pitch), in file order, the number of notes
    sounding after message i is q_i = S_i - min(0, min_{j<=i} S_j), where S is the running sum of +1
    per note-on and -1 per note-off (Lindley's recursion). A note-off that meets q = 0 is an orphan;
    without the orphans, the k-th note-off of a key ends the k-th note-on of that key."""
    kind, channel, pitch = messages.kind, messages.channel, messages.data1
    n_messages = len(kind)
    index = np.nonzero((kind == midi.NOTE_ON) | (kind == midi.NOTE_OFF))[0]
    key = channel[index] * 128 + pitch[index]
    by_key = np.argsort(key, kind="stable")  # by key, then file order
    index, key = index[by_key], key[by_key]
    is_on = kind[index] == midi.NOTE_ON
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    group, n_keys = np.cumsum(first) - 1, int(first.sum())  # the key's number, 0.. in key order
    step = np.where(is_on, 1, -1)
    running = np.cumsum(step)
    running -= np.repeat((running - step)[first], np.diff(np.append(np.nonzero(first)[0], len(key))))
    far = 2 * len(key) + 2  # pushes each later key below all earlier ones: a running minimum per key
    lowest = np.minimum(np.minimum.accumulate(running - group * far) + group * far, 0)
    lowest_before = np.where(first, 0, np.roll(lowest, 1))  # min(0, S_j) over the key's messages before i
    sounding_before = running - step - lowest_before
    orphan = ~is_on & (sounding_before == 0)
    ends = ~is_on & ~orphan
    on_at = np.nonzero(is_on)[0]
    ons_before = np.concatenate([[0], np.cumsum(np.bincount(group[is_on], minlength=n_keys))])
    ends_before = np.concatenate([[0], np.cumsum(np.bincount(group[ends], minlength=n_keys))])
    end_at = np.nonzero(ends)[0]
    rank = np.arange(len(end_at)) - ends_before[group[end_at]]  # the k of each note-off within its key
    ended = ons_before[group[end_at]] + rank  # which note-on (in on_at) each note-off ends
    begun_at = on_at[ended]
    unterminated = np.ones(len(on_at), bool)
    unterminated[ended] = False
    on_index = np.concatenate([index[begun_at], index[on_at[unterminated]]])
    off_index = np.concatenate([index[end_at], np.full(int(unterminated.sum()), n_messages)])
    order = np.lexsort((on_index, off_index))
    on_index, off_index = on_index[order], off_index[order]
    program_index = np.nonzero(kind == midi.PROGRAM_CHANGE)[0]
    programs = np.stack([messages.tick[program_index], channel[program_index], pitch[program_index], program_index],
                        axis=1).reshape(-1, 4)
    notes = np.stack([messages.tick[on_index], np.append(messages.tick, messages.end_tick)[off_index],
                      channel[on_index], pitch[on_index], messages.data2[on_index],
                      _program_at(programs, channel[on_index], on_index, n_messages), on_index, off_index],
                     axis=1).reshape(-1, 8)
    stats = {"orphan_note_offs": int(orphan.sum()), "unterminated_notes": int(unterminated.sum()),
             "overlapping_notes": int((is_on & (sounding_before > 0)).sum()),
             "notes": len(notes), "program_changes": len(programs)}
    return notes, programs, stats


def _program_at(programs: np.ndarray, channel: np.ndarray, index: np.ndarray, n_messages: int) -> np.ndarray:
    """The program each channel holds just before message `index`: its last program change, else 0."""
    if not len(programs):
        return np.zeros(len(index), np.int64)
    code = programs[:, 1] * (n_messages + 1) + programs[:, 3]  # by channel, then file order
    order = np.argsort(code)
    latest = order[np.maximum(np.searchsorted(code[order], channel * (n_messages + 1) + index) - 1, 0)]
    found = (programs[latest, 1] == channel) & (programs[latest, 3] < index)
    return np.where(found, programs[latest, 2], 0)
