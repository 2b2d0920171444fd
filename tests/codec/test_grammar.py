"""The event grammar (codec/grammar.py): its masks never exclude what the codec writes, and they are exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from midiformer.codec import events, grammar
from midiformer.data.dataset import eval_batches, split_inputs_targets
from midiformer.model.loss import grammar_violations
from tests.conftest import dev_files

WINDOW = 512


def encoded_corpus(durations: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every dev file encoded, songs one after another as in a store split, and each song's first row."""
    songs = [events.encode(path, durations=durations) for path in dev_files()]
    offsets = np.concatenate([[0], np.cumsum([len(song) for song in songs])])
    return np.concatenate(songs), offsets


@pytest.fixture(scope="module", params=[True, False], ids=["durations", "note_off_rows"])
def corpus(dev_data, request) -> tuple[np.ndarray, np.ndarray]:
    """The dev corpus in both layouts: durations on the note-ons (the default), a note_off row per note."""
    return encoded_corpus(request.param)


@pytest.fixture(scope="module")
def note_off_corpus(dev_data) -> tuple[np.ndarray, np.ndarray]:
    return encoded_corpus(durations=False)


@pytest.mark.slow  # all 473 dev files: 90 s on a loaded 2-core machine
def test_the_masks_allow_every_row_of_every_dev_file(corpus):
    """Windows cut anywhere (mid-song, across song boundaries): each target is allowed by its mask."""
    rows, offsets = corpus
    totals = dict.fromkeys(events.FIELDS, 0)
    for batch in eval_batches(rows, 32, WINDOW, offsets=offsets):
        inputs, targets, start = batch.to("cpu")
        for field, count in grammar_violations(grammar.field_masks(inputs, targets, start), targets).items():
            totals[field] += count
    assert totals == dict.fromkeys(events.FIELDS, 0)


def test_the_masks_are_not_trivial(note_off_corpus):
    """On real songs the grammar fixes the instrument of every note-on and restricts every note-off's pitch."""
    rows, offsets = note_off_corpus
    batch = next(eval_batches(rows[:20 * WINDOW], 16, WINDOW, offsets=offsets[offsets < 20 * WINDOW]))
    inputs, targets, start = batch.to("cpu")
    masks = grammar.field_masks(inputs, targets, start)
    is_on, is_off = targets[..., 0] == events.NOTE_ON, targets[..., 0] == events.NOTE_OFF
    assert is_on.any() and is_off.any()
    assert (masks["instrument"][is_on].sum(-1) == 1).all()
    assert (masks["note"][is_off].sum(-1) < 128).all()
    assert (masks["time"][targets[..., 0] == events.TIME_SHIFT].sum(-1) == 1).all()


def test_the_state_before_a_window_equals_following_the_song_from_its_start(corpus):
    """Masks of a window cut mid-song (state from SongStart.before) equal those of the same rows read from
    the song's first row on."""
    rows, offsets = corpus
    song = int(np.argmax(np.diff(offsets)))  # the longest song
    first = int(offsets[song])
    whole = torch.from_numpy(rows[first:first + 1 + 2 * WINDOW].astype(np.int64))[None]
    inputs, targets = split_inputs_targets(whole)
    empty = grammar.SongStart.before(rows, offsets, np.array([first]))
    reference = grammar.field_masks(inputs, targets, empty)
    cut = first + WINDOW
    window = torch.from_numpy(rows[cut:cut + 1 + WINDOW].astype(np.int64))[None]
    cut_inputs, cut_targets = split_inputs_targets(window)
    masks = grammar.field_masks(cut_inputs, cut_targets, grammar.SongStart.before(rows, offsets, np.array([cut])))
    assert int(empty.sounding.sum()) == 0
    for field in events.FIELDS:
        assert torch.equal(masks[field][0], reference[field][0, WINDOW:]), field


def test_a_start_row_resets_the_programs():
    song = np.zeros((6, len(events.FIELDS)), np.int64)
    song[:, 0] = [events.START, events.PROGRAM, events.NOTE_ON, events.END, events.START, events.NOTE_ON]
    song[1, 2:4] = (3, 40)   # channel 3 plays program 40 ...
    song[2, 2:5] = (3, 40, 60)
    song[5, 2:5] = (3, 0, 60)  # ... until the next song, where channel 3 is back to program 0
    inputs, targets = split_inputs_targets(torch.from_numpy(song)[None])
    masks = grammar.field_masks(inputs, targets, grammar.SongStart.before(song, np.array([0, 4, 6]), np.array([0])))
    assert masks["instrument"][0, 1].nonzero().flatten().tolist() == [40]
    assert masks["instrument"][0, 4].nonzero().flatten().tolist() == [0]
    assert masks["type"][0, 3].nonzero().flatten().tolist() == [events.START]  # after END comes START
    assert not masks["type"][0, [0, 1, 2, 4], events.START].any()


def test_onset_ticks_of_a_window_cut_mid_song_are_the_songs_grid_ticks(corpus):
    """The beat-phase input counts each row's grid tick from the running time gaps, across a window cut
    anywhere and across the START of the next song."""
    rows, offsets = corpus
    cut, length = int(offsets[5]) + 300, 4 * WINDOW  # crosses into the songs after the sixth
    window = torch.from_numpy(rows[cut:cut + length].astype(np.int64))[None]
    ticks = grammar.onset_ticks(window, grammar.SongStart.before(rows, offsets, np.array([cut])).ticks)[0].numpy()
    songs = [(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:]) if b > cut and a < cut + length]
    assert len(songs) > 1
    expected = np.concatenate([events.grid_ticks(rows[a:b]) for a, b in songs])[cut - songs[0][0]:][:length]
    np.testing.assert_array_equal(ticks, expected)


def test_the_tracker_of_ordered_windows_equals_reading_each_song_from_its_start(corpus):
    rows, offsets = corpus
    starts = np.arange(0, len(rows) - 1, 997)
    tracked = grammar.StateTracker(rows, offsets).before(starts)
    direct = grammar.SongStart.before(rows, offsets, starts)
    assert torch.equal(tracked.sounding, direct.sounding) and int(direct.sounding.sum()) > 0
    assert torch.equal(tracked.programs, direct.programs) and torch.equal(tracked.ticks, direct.ticks)
    assert torch.equal(tracked.played, direct.played) and torch.equal(tracked.gaps, direct.gaps)
    assert int(direct.played.sum()) > 0


def test_played_counts_count_each_channels_note_on_values(corpus):
    """SongStart's counts of what the song played before a window, against a count row by row."""
    rows, offsets = corpus
    first, cut = int(offsets[3]), int(offsets[3]) + 400
    start = grammar.SongStart.before(rows, offsets, np.array([cut]))
    played, gaps = start.played[0].numpy(), start.gaps[0].numpy()
    expected_played, expected_gaps = np.zeros_like(played), np.zeros_like(gaps)
    for row in rows[first:cut]:
        if row[events.TYPE] == events.NOTE_ON:
            for column, offset in zip(grammar.COUNTED_COLUMNS, grammar.COUNT_OFFSETS):
                expected_played[row[events.CHANNEL], offset + row[column]] += 1
            expected_gaps[row[events.TIME]] += 1
    np.testing.assert_array_equal(played, expected_played)
    np.testing.assert_array_equal(gaps, expected_gaps)
    assert (expected_played > 0).sum() > 20
