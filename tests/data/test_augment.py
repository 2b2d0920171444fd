"""Augmentation invariants on real windows: drums untouched, ranges held, only the intended fields change."""
from __future__ import annotations

import numpy as np
import pytest

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.data.augment import AUGMENTS, TempoStretch, Transpose, Velocity
from midiformer.data.dataset import train_batch

TYPE, TIME, CHANNEL, NOTE, VELOCITY = (events.COLUMN[f] for f in ("type", "time", "channel", "note", "velocity"))


@pytest.fixture(scope="module")
def windows(small_store) -> list[np.ndarray]:
    """256-row windows of real music, drums included."""
    rows, offsets = small_store.events("train"), small_store.offsets("train")
    batches = [train_batch(rows, offsets, step, seed=0, batch_size=16, seq_len=255).rows.numpy() for step in range(4)]
    found = list(np.concatenate(batches))
    assert any((w[:, CHANNEL] == events.DRUM_CHANNEL).any() for w in found)
    return found


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


def test_tempo_stretches_time_only_and_keeps_it_on_the_grid(windows):
    tempo = TempoStretch(min_factor=0.8, max_factor=1.25)
    for i, w in enumerate(windows):
        out = tempo(w.copy(), np.random.default_rng(i))
        assert changed_columns(w, out) <= {"time"}
        assert out[:, TIME].min() >= 0 and out[:, TIME].max() <= events.MAX_TIME_SHIFT
        span, stretched = w[:, TIME].sum(), out[:, TIME].sum()
        if span > 200 and out[:, TIME].max() < events.MAX_TIME_SHIFT:
            assert 0.8 * span - 1 <= stretched <= 1.25 * span + 1


def test_tempo_cuts_gaps_at_the_cap():
    window = np.zeros((5, len(events.FIELDS)), dtype=np.int64)
    window[:, TYPE] = [events.START, events.TIME_SHIFT, events.TIME_SHIFT, events.NOTE_ON, events.END]
    window[:, TIME] = [0, events.MAX_TIME_SHIFT, events.MAX_TIME_SHIFT, 10, 100]
    out = TempoStretch(min_factor=1.5, max_factor=1.5)(window, np.random.default_rng(0))
    assert out[:, TIME].tolist() == [0, events.MAX_TIME_SHIFT, events.MAX_TIME_SHIFT, 15, 150]
    out = TempoStretch(min_factor=0.5, max_factor=0.5)(window, np.random.default_rng(0))
    assert out[:, TIME].tolist() == [0, events.MAX_TIME_SHIFT // 2, events.MAX_TIME_SHIFT // 2, 5, 50]


def test_padding_rows_are_never_touched():
    window = np.full((4, len(events.FIELDS)), events.IGNORE, dtype=np.int64)
    window[0] = [events.NOTE_ON, 10, 0, 0, 60, 100]
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
