"""Notes from MIDI messages: each note-on paired with the note-off that ends it.

A note-off ends the earliest sounding note of its channel and pitch (first in, first out), as
synthesizers do; the pairing is vectorised (one pass of numpy per file), because in a Python loop it
was 40 % of preparing a corpus.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    order the notes end in the file (the unterminated ones last, in the order they began)."""
    kind, channel, pitch = messages.kind, messages.channel, messages.data1
    n_messages = len(kind)
    index = np.nonzero((kind == midi.NOTE_ON) | (kind == midi.NOTE_OFF))[0]
    is_on = kind[index] == midi.NOTE_ON
    match = match_first_in_first_out(channel[index] * 128 + pitch[index], is_on)
    on_at = np.nonzero(is_on)[0]
    end_at = match.partner[on_at]
    unterminated = end_at < 0
    on_index = index[on_at]
    off_index = np.where(unterminated, n_messages, index[end_at])
    order = np.lexsort((on_index, off_index))
    on_index, off_index = on_index[order], off_index[order]
    program_index = np.nonzero(kind == midi.PROGRAM_CHANGE)[0]
    programs = np.stack([messages.tick[program_index], channel[program_index], pitch[program_index], program_index],
                        axis=1).reshape(-1, 4)
    notes = np.stack([messages.tick[on_index], np.append(messages.tick, messages.end_tick)[off_index],
                      channel[on_index], pitch[on_index], messages.data2[on_index],
                      _program_at(programs, channel[on_index], on_index, n_messages), on_index, off_index],
                     axis=1).reshape(-1, 8)
    stats = {"orphan_note_offs": int((~is_on & (match.partner < 0)).sum()), "unterminated_notes": int(unterminated.sum()),
             "overlapping_notes": int((is_on & (match.sounding_before > 0)).sum()),
             "notes": len(notes), "program_changes": len(programs)}
    return notes, programs, stats


@dataclass
class Match:
    partner: np.ndarray          # (n,) the end a start is ended by, the start an end ends; -1: none
    sounding_before: np.ndarray  # (n,) starts of the same key not yet ended, just before each event


def match_first_in_first_out(key: np.ndarray, is_start: np.ndarray) -> Match:
    """Starts and ends of notes in time order, each of a key (channel * 128 + pitch): each end ends the
    earliest start of its key not yet ended; an end with none is an orphan; a start never ended is
    unterminated. Vectorised: per key, the number sounding after event i is q_i = S_i - min(0, min_{j<=i} S_j),
    where S is the running sum of +1 per start and -1 per end (Lindley's recursion). An end that meets
    q = 0 is an orphan; without the orphans, the k-th end of a key ends its k-th start."""
    key, is_start = np.asarray(key, np.int64), np.asarray(is_start, bool)
    by_key = np.argsort(key, kind="stable")  # by key, then time order
    key_sorted, start = key[by_key], is_start[by_key]
    first = np.ones(len(key), bool)
    first[1:] = key_sorted[1:] != key_sorted[:-1]
    group, n_keys = np.cumsum(first) - 1, int(first.sum())  # the key's number, 0.. in key order
    step = np.where(start, 1, -1)
    running = np.cumsum(step)
    running -= np.repeat((running - step)[first], np.diff(np.append(np.nonzero(first)[0], len(key))))
    far = 2 * len(key) + 2  # pushes each later key below all earlier ones: a running minimum per key
    lowest = np.minimum(np.minimum.accumulate(running - group * far) + group * far, 0)
    lowest_before = np.where(first, 0, np.roll(lowest, 1))  # min(0, S_j) over the key's events before i
    sounding_before = running - step - lowest_before
    ends = ~start & (sounding_before > 0)
    start_at, end_at = np.nonzero(start)[0], np.nonzero(ends)[0]
    starts_before = np.concatenate([[0], np.cumsum(np.bincount(group[start], minlength=n_keys))])
    ends_before = np.concatenate([[0], np.cumsum(np.bincount(group[ends], minlength=n_keys))])
    rank = np.arange(len(end_at)) - ends_before[group[end_at]]  # the k of each end within its key
    begun_at = start_at[starts_before[group[end_at]] + rank]  # the start each end ends
    partner = np.full(len(key), -1, np.int64)
    partner[by_key[end_at]], partner[by_key[begun_at]] = by_key[begun_at], by_key[end_at]
    unsorted_sounding = np.empty(len(key), np.int64)
    unsorted_sounding[by_key] = sounding_before
    return Match(partner, unsorted_sounding)


def _program_at(programs: np.ndarray, channel: np.ndarray, index: np.ndarray, n_messages: int) -> np.ndarray:
    """The program each channel holds just before message `index`: its last program change, else 0."""
    if not len(programs):
        return np.zeros(len(index), np.int64)
    code = programs[:, 1] * (n_messages + 1) + programs[:, 3]  # by channel, then file order
    order = np.argsort(code)
    latest = order[np.maximum(np.searchsorted(code[order], channel * (n_messages + 1) + index) - 1, 0)]
    found = (programs[latest, 1] == channel) & (programs[latest, 3] < index)
    return np.where(found, programs[latest, 2], 0)
