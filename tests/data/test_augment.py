"""Augmentation invariants on real windows: drums untouched, ranges held, only the intended fields change."""
from __future__ import annotations

import math

import numpy as np
import pytest

from midiformer.codec import events, grammar
from midiformer.common import ConfigError
from midiformer.data.augment import AUGMENTS, TempoStretch, Transpose, Velocity, ends_of_notes_begun_before
from midiformer.data.dataset import train_batch
from midiformer.model.loss import grammar_violations

TYPE, TIME, CHANNEL, NOTE, VELOCITY, DURATION = (events.COLUMN[f] for f in ("type", "time", "channel", "note", "velocity",
                                                                     "duration"))


@pytest.fixture(scope="module")
def batches(note_off_store) -> list:
    """Training batches with many notes sounding before their windows (note_off rows: durations=false)."""
    rows, offsets = note_off_store.events("train"), note_off_store.offsets("train")
    return [train_batch(rows, offsets, step, seed=0, batch_size=16, seq_len=255) for step in range(4)]


@pytest.fixture(scope="module")
def windows(batches) -> list[np.ndarray]:
    """256-row windows of real music, drums included."""
    found = list(np.concatenate([batch.rows.numpy() for batch in batches]))
    assert any((w[:, CHANNEL] == events.DRUM_CHANNEL).any() for w in found)
    return found


@pytest.fixture(scope="module")
def states(batches) -> list[tuple[np.ndarray, np.ndarray]]:
    """The song state before each window (sounding notes, programs), as the dataset gives it."""
    return [(b.start.sounding[i].numpy(), b.start.programs[i].numpy()) for b in batches for i in range(len(b.rows))]


def changed_columns(before: np.ndarray, after: np.ndarray) -> set[str]:
    return {events.FIELDS[f] for f in range(len(events.FIELDS)) if not np.array_equal(before[:, f], after[:, f])}


def test_registered_choices():
    assert AUGMENTS.names() == ["all", "none", "tempo", "transpose", "velocity"]
    with pytest.raises(ConfigError, match="data.augment='pitch' is unknown"):
        AUGMENTS.build("pitch")


def test_none_changes_nothing(windows):
    for w in windows[:8]:
        assert np.array_equal(AUGMENTS.build("none")(w.copy(), np.random.default_rng(0)), w)


def test_transpose_moves_pitched_notes_only_and_keeps_them_in_range(windows):
    transpose, shifts = Transpose(max_semitones=5), set()
    for i, w in enumerate(windows):
        out = transpose(w.copy(), np.random.default_rng(i))
        pitched = np.isin(w[:, TYPE], [events.NOTE_ON, events.NOTE_OFF]) & (w[:, CHANNEL] != events.DRUM_CHANNEL)
        assert changed_columns(w, out) <= {"note"}
        assert np.array_equal(out[~pitched], w[~pitched])  # drums, tempo rows and the rest are untouched
        shift = set((out[pitched, NOTE] - w[pitched, NOTE]).tolist())
        assert len(shift) <= 1 and all(-5 <= s <= 5 for s in shift)
        assert out[:, NOTE].min() >= 0 and out[:, NOTE].max() <= 127
        shifts |= shift
    assert len(shifts) >= 8  # the shift really varies


def test_transpose_never_pushes_a_note_out_of_range(windows):
    w = next(w for w in windows if ((w[:, TYPE] == events.NOTE_ON) & (w[:, CHANNEL] != events.DRUM_CHANNEL)).sum() > 2)
    is_note = np.isin(w[:, TYPE], [events.NOTE_ON, events.NOTE_OFF])
    pitched = np.nonzero(is_note & (w[:, CHANNEL] != events.DRUM_CHANNEL))[0]
    edge = w.copy()
    edge[pitched[0], NOTE], edge[pitched[1], NOTE] = 0, 127  # a window spanning the whole range cannot move
    for seed in range(20):
        assert np.array_equal(Transpose(max_semitones=12)(edge.copy(), np.random.default_rng(seed)), edge)
    high = w.copy()
    high[pitched, NOTE] = 125  # only shifts of -12..+2 keep it in range
    transpose = Transpose(max_semitones=12)
    outs = {int(transpose(high.copy(), np.random.default_rng(s))[pitched[0], NOTE]) for s in range(60)}
    assert max(outs) == 127 and min(outs) < 120


def test_velocity_changes_note_on_velocities_only_within_1_127(windows):
    velocity, moved = Velocity(min_scale=0.5, max_scale=2.0, max_offset=20), 0
    for i, w in enumerate(windows):
        out = velocity(w.copy(), np.random.default_rng(i))
        note_on = w[:, TYPE] == events.NOTE_ON
        assert changed_columns(w, out) <= {"velocity"}
        assert np.array_equal(out[~note_on], w[~note_on])  # tempo rows keep their tempo bits
        assert out[note_on, VELOCITY].min() >= 1 and out[note_on, VELOCITY].max() <= 127
        moved += not np.array_equal(out, w)
    assert moved >= len(windows) - 2
    loud = Velocity(min_scale=2.0, max_scale=2.0, max_offset=0)(windows[0].copy(), np.random.default_rng(0))
    note_on = windows[0][:, TYPE] == events.NOTE_ON
    np.testing.assert_array_equal(loud[note_on, VELOCITY], np.minimum(windows[0][note_on, VELOCITY] * 2, 127))


def positions(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows that are not time_shifts, and their grid positions from the row before the window."""
    real = window[window[:, TYPE] != events.IGNORE]
    at = np.cumsum(real[:, TIME])
    keep = real[:, TYPE] != events.TIME_SHIFT
    return real[keep], at[keep]


@pytest.fixture(scope="module")
def duration_windows(small_store) -> list[np.ndarray]:
    """Windows of the default layout: notes carry their durations."""
    rows, offsets = small_store.events("train"), small_store.offsets("train")
    return [w for step in range(2) for w in train_batch(rows, offsets, step, seed=0, batch_size=16, seq_len=255).rows.numpy()]


@pytest.mark.parametrize("layout", ["windows", "duration_windows"])
def test_tempo_stretches_positions_and_keeps_everything_else(layout, request):
    tempo, factors, closed_notes = TempoStretch(min_factor=0.8, max_factor=1.25), [], 0
    for i, w in enumerate(request.getfixturevalue(layout)):
        out = tempo(w.copy(), np.random.default_rng(i))
        before, at_before = positions(w)
        after, at_after = positions(out)
        n = len(after)
        # every row but the time shifts is still there, in order, with the same fields; only times move
        np.testing.assert_array_equal(np.delete(after, [TIME, DURATION], 1), np.delete(before[:n], [TIME, DURATION], 1))
        assert n >= len(before) - (w[:, TYPE] == events.TIME_SHIFT).sum() - (out[:, TIME] == 0).sum() - 1
        # the factor is drawn log-uniformly (the docstring's promise), once for the whole window
        factor = math.exp(np.random.default_rng(i).uniform(math.log(0.8), math.log(1.25)))
        np.testing.assert_array_equal(at_after, np.rint(at_before[:n] * factor))
        # a note's end moves as a position too (cut to MAX_DURATION)
        closed = (after[:, TYPE] == events.NOTE_ON) & (after[:, DURATION] != events.OPEN)
        end = np.rint((at_before[:n][closed] + before[:n][closed, DURATION] - 1) * factor)
        np.testing.assert_array_equal(after[closed, DURATION] - 1,
                                      np.minimum(end - at_after[closed], events.MAX_DURATION))
        closed_notes += int(closed.sum())
        factors.append(factor)
    assert min(factors) < 0.85 and max(factors) > 1.2
    assert (closed_notes > 1000) == (layout == "duration_windows")


@pytest.mark.parametrize("factor", [0.5, 0.8, 0.9, 1.1, 1.25, 2.0])
def test_tempo_keeps_the_grammar_for_any_factor(windows, factor):
    tempo = TempoStretch(min_factor=factor, max_factor=factor)
    for i, w in enumerate(windows):
        out = tempo(w.copy(), np.random.default_rng(i))
        grammar.check(out[out[:, TYPE] != events.IGNORE], controls=events.DEFAULT_CONTROLS, pitch_bend=True)
        assert out.shape == w.shape


def test_tempo_reframes_long_rests_as_the_codec_would():
    window = np.zeros((5, len(events.FIELDS)), dtype=np.int64)
    window[:, TYPE] = [events.START, events.TIME_SHIFT, events.TIME_SHIFT, events.NOTE_ON, events.NOTE_OFF]
    window[:, TIME] = [0, events.MAX_TIME_SHIFT, events.MAX_TIME_SHIFT, 10, 100]
    window[3, [NOTE, VELOCITY]], window[4, NOTE] = (60, 90), 60
    slower = TempoStretch(min_factor=1.5, max_factor=1.5)(window.copy(), np.random.default_rng(0))
    # the rest of 778 steps becomes 1167 = 3 x 384 + 15: one time shift more, and the note_off no longer fits
    assert slower[:, TYPE].tolist() == [events.START] + [events.TIME_SHIFT] * 3 + [events.NOTE_ON]
    assert slower[:, TIME].tolist() == [0, 384, 384, 384, 15]
    faster = TempoStretch(min_factor=0.5, max_factor=0.5)(window.copy(), np.random.default_rng(0))
    # 778 steps -> 389 = 384 + 5, the note lasts 50 instead of 100; the window lost a row and ends in padding
    assert faster[:4, TYPE].tolist() == [events.START, events.TIME_SHIFT, events.NOTE_ON, events.NOTE_OFF]
    assert faster[:4, TIME].tolist() == [0, 384, 5, 50] and (faster[4] == events.IGNORE).all()
    for out in (slower, faster):
        grammar.check(out[out[:, TYPE] != events.IGNORE])
    np.testing.assert_array_equal(faster[2, [NOTE, VELOCITY]], [60, 90])


def test_a_rest_that_runs_past_the_window_stretches_too():
    window = np.zeros((4, len(events.FIELDS)), dtype=np.int64)
    window[:, TYPE] = [events.NOTE_OFF, events.TIME_SHIFT, events.TIME_SHIFT, events.TIME_SHIFT]
    window[:, TIME] = [4, 384, 384, 384]
    out = TempoStretch(min_factor=0.5, max_factor=0.5)(window.copy(), np.random.default_rng(0))
    assert out[:, TYPE].tolist() == [events.NOTE_OFF, events.TIME_SHIFT] + [events.IGNORE] * 2
    assert out[:2, TIME].tolist() == [2, 384]


@pytest.mark.parametrize("name", ["none", "transpose", "velocity", "tempo", "all"])
def test_every_augmentation_keeps_the_grammar(name, windows, states):
    aug = AUGMENTS.build(name)
    for seed in range(3):
        for i, (w, before) in enumerate(zip(windows, states)):
            out = aug(w.copy(), np.random.default_rng([seed, i]), before)
            # following on from the song's state before the window, every rule holds, state included
            grammar.check(out[out[:, TYPE] != events.IGNORE], controls=events.DEFAULT_CONTROLS, pitch_bend=True,
                          before=before)


@pytest.mark.parametrize("name", ["transpose", "tempo", "all"])
def test_the_grammar_masked_likelihood_allows_every_augmented_target(name, small_store):
    rows, offsets = small_store.events("train"), small_store.offsets("train")
    for step in range(6):
        batch = train_batch(rows, offsets, step, seed=1, batch_size=16, seq_len=255, augment=AUGMENTS.build(name))
        inputs, targets, start = batch.to("cpu")
        assert sum(grammar_violations(grammar.field_masks(inputs, targets, start), targets).values()) == 0


def test_transpose_leaves_the_ends_of_notes_begun_before_the_window(windows, states):
    transpose, checked = Transpose(max_semitones=6), 0
    for i, (w, before) in enumerate(zip(windows, states)):
        if not before[0][np.arange(16) != events.DRUM_CHANNEL].any():
            continue
        out = transpose(w.copy(), np.random.default_rng(i), before)
        ends = ends_of_notes_begun_before(w, before)
        assert ends.any()
        np.testing.assert_array_equal(out[ends], w[ends])
        checked += 1
    assert checked > 5


def test_an_augmentation_that_breaks_the_grammar_is_stopped(windows):
    class Broken(Velocity):
        def augment(self, window, rng, before):
            window = window.copy()
            window[window[:, TYPE] == events.NOTE_ON, VELOCITY] = 0
            return window

    with pytest.raises(grammar.GrammarError, match="note_on of velocity 0"):
        Broken()(windows[0].copy(), np.random.default_rng(0))


def test_padding_rows_are_never_touched():
    window = np.full((4, len(events.FIELDS)), events.IGNORE, dtype=np.int64)
    window[0] = [events.NOTE_ON, 10, 0, 0, 60, 100, 1 + 48]
    for name in AUGMENTS.names():
        out = AUGMENTS.build(name)(window.copy(), np.random.default_rng(1))
        assert np.all(out[1:] == events.IGNORE), name


@pytest.mark.parametrize("name", ["transpose", "velocity", "tempo", "all"])
def test_same_generator_seed_same_result(name, windows):
    aug = AUGMENTS.build(name)
    outs = [aug(windows[3].copy(), np.random.default_rng([7, 1])) for _ in range(2)]
    assert np.array_equal(outs[0], outs[1])
    assert any(not np.array_equal(aug(w.copy(), np.random.default_rng(9)), w) for w in windows[:4])


@pytest.mark.parametrize("bad", [dict(min_scale=0), dict(min_scale=1.5, max_scale=1.0)])
def test_bad_velocity_options(bad):
    with pytest.raises(ConfigError, match="data.augment"):
        Velocity(**bad)


def test_bad_tempo_and_transpose_options():
    with pytest.raises(ConfigError, match="data.augment"):
        TempoStretch(min_factor=1.2, max_factor=1.1)
    with pytest.raises(ConfigError, match="max_semitones"):
        Transpose(max_semitones=-1)
