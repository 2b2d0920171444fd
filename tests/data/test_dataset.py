"""Training windows (pure function of seed and step, sharded by rank) and exhaustive evaluation windows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.data.augment import AUGMENTS
from midiformer.data.dataset import (
    eval_batches,
    mask_targets,
    split_inputs_targets,
    train_batch,
)

SEQ = 64


@pytest.fixture(scope="module")
def train(small_store):
    return small_store.events("train"), small_store.offsets("train")


def test_train_batch_is_windows_of_the_split(train):
    rows, offsets = train
    batch = train_batch(rows, offsets, 0, seed=1, batch_size=8, seq_len=SEQ).rows
    assert batch.dtype == torch.int64 and batch.shape == (8, SEQ + 1, len(events.FIELDS))
    for window in batch.numpy():
        starts = np.nonzero((rows[:, 0] == window[0, 0]) & (rows[:, 1] == window[0, 1]))[0]
        assert any(np.array_equal(rows[s:s + SEQ + 1], window) for s in starts)


def test_train_batch_is_a_pure_function_of_seed_and_step(train):
    rows, offsets = train
    def batch(step, seed=0):
        return train_batch(rows, offsets, step, seed=seed, batch_size=8, seq_len=SEQ).rows

    assert torch.equal(batch(5), batch(5))
    assert not torch.equal(batch(5), batch(6)) and not torch.equal(batch(5), batch(5, seed=1))
    start = train_batch(rows, offsets, 5, seed=0, batch_size=8, seq_len=SEQ).start
    assert torch.equal(start.sounding, train_batch(rows, offsets, 5, seed=0, batch_size=8, seq_len=SEQ).start.sounding)


def test_the_start_state_is_the_songs_state_before_each_window(note_off_store):
    """OPEN notes sounding when a window begins are the song's notes started and not yet ended before it."""
    rows, offsets = note_off_store.events("train"), note_off_store.offsets("train")
    batch = train_batch(rows, offsets, 3, seed=0, batch_size=16, seq_len=SEQ)
    assert batch.start.sounding.sum() > 0  # some windows begin while notes sound
    for window, sounding in zip(batch.rows.numpy(), batch.start.sounding.numpy()):
        begin = next(s for s in range(len(rows)) if np.array_equal(rows[s:s + SEQ + 1], window))
        first = offsets[np.searchsorted(offsets, begin, side="right") - 1]
        expected = np.zeros((16, 128), np.int64)
        for row in rows[first:begin]:
            expected[row[2], row[4]] += int(row[0] == events.NOTE_ON) - int(row[0] == events.NOTE_OFF)
        assert (rows[first:begin, events.DURATION] == events.OPEN).all()
        np.testing.assert_array_equal(sounding, expected)


def test_some_windows_begin_on_a_song_start(train):
    rows, offsets = train
    firsts = torch.cat([train_batch(rows, offsets, s, seed=0, batch_size=16, seq_len=SEQ).rows[:, 0]
                        for s in range(20)])
    assert (firsts[:, 0] == events.START).sum() >= 10  # about 1 in 8 of 320 windows
    assert (firsts[:, 0] != events.START).sum() >= 200


@pytest.mark.parametrize("augment", [None, "all"])
def test_ranks_split_the_global_batch(train, augment):
    rows, offsets = train
    aug = AUGMENTS.build(augment) if augment else None
    options = dict(seed=3, batch_size=8, seq_len=SEQ, augment=aug)
    whole = train_batch(rows, offsets, 7, **options).rows
    for world_size in (2, 4):
        parts = [train_batch(rows, offsets, 7, rank=r, world_size=world_size, **options).rows
                 for r in range(world_size)]
        assert all(p.shape[0] == 8 // world_size for p in parts)
        assert torch.equal(torch.cat(parts), whole)


def test_augmentation_is_seeded_by_seed_and_step(train):
    rows, offsets = train
    options = dict(seed=3, batch_size=8, seq_len=SEQ)
    plain = train_batch(rows, offsets, 2, **options).rows
    augmented = train_batch(rows, offsets, 2, augment=AUGMENTS.build("all"), **options).rows
    assert not torch.equal(plain, augmented)
    assert torch.equal(augmented, train_batch(rows, offsets, 2, augment=AUGMENTS.build("all"), **options).rows)
    for before, after in zip(plain[..., 0], augmented[..., 0]):  # the events stay; only time shifts may come or go
        kept = lambda types: types[(types != events.TIME_SHIFT) & (types != events.IGNORE)]  # noqa: E731
        assert torch.equal(kept(after), kept(before)[: len(kept(after))])


def test_bad_batch_and_window_sizes_are_config_errors(train):
    rows, offsets = train
    with pytest.raises(ConfigError, match="data.batch_size=6 must be a positive multiple of the world size 4"):
        train_batch(rows, offsets, 0, seed=0, batch_size=6, seq_len=SEQ, world_size=4)
    with pytest.raises(ConfigError, match="data.seq_len"):
        train_batch(rows[:10], offsets[:1], 0, seed=0, batch_size=2, seq_len=SEQ)
    with pytest.raises(ConfigError, match="data.eval_batch_size"):
        next(eval_batches(rows, 3, SEQ, world_size=2))


def targets_in_order(batches_per_rank: list[list[torch.Tensor]]) -> np.ndarray:
    """Deal the windows back from the ranks (round-robin) and keep the non-padding target rows."""
    per_rank = [torch.cat(batches) for batches in batches_per_rank]
    windows = torch.stack(per_rank, dim=1).flatten(0, 1)  # window k = rank k % W, its (k // W)-th
    targets = windows[:, 1:].flatten(0, 1).numpy()
    return targets[targets[:, 0] != events.IGNORE]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("split", ["train", "val"])
def test_eval_batches_cover_every_event_once(small_store, split, world_size):
    rows = small_store.events(split)
    batches = [[b.rows for b in eval_batches(rows, 2 * world_size, SEQ, rank=r, world_size=world_size)]
               for r in range(world_size)]
    assert len({len(b) for b in batches}) == 1  # every rank runs the same number of batches
    assert all(batch.shape == (2, SEQ + 1, len(events.FIELDS)) for b in batches for batch in b)
    np.testing.assert_array_equal(targets_in_order(batches), rows[1:])
    for b in batches:  # consecutive windows of a rank overlap by one row with the window between them
        for batch in b:
            padding = batch[..., 0] == events.IGNORE
            assert torch.all(batch[padding] == events.IGNORE)
            assert not torch.any(padding[:, :-1] & ~padding[:, 1:])  # padding only at the end


def test_eval_windows_overlap_by_one_row(small_store):
    rows = small_store.events("val")
    first, = [b.rows for b in eval_batches(rows[:2 * SEQ + 1], 2, SEQ)]
    assert torch.equal(first[0, -1], first[1, 0])
    np.testing.assert_array_equal(first[1].numpy(), rows[SEQ:2 * SEQ + 1])


def test_targets_keep_only_the_fields_of_their_type(small_store):
    rows = small_store.events("val")
    batch, = [b.rows for b in eval_batches(rows[:3 * SEQ], 4, SEQ)]  # 3 windows and 1 padding window
    inputs, targets = split_inputs_targets(batch)
    assert torch.equal(inputs, batch[:, :-1].clamp(min=0)) and inputs.min() >= 0
    expected = batch[:, 1:].clone()
    types = expected[..., 0]
    for t in range(len(events.TYPES)):
        for f, applies in enumerate(events.APPLIES[t]):
            if not applies:
                expected[..., f][types == t] = events.IGNORE
    assert torch.equal(targets, expected)
    assert torch.all(targets[3] == events.IGNORE) and torch.all(targets[2, -1] == events.IGNORE)
    note_ons, others = types == events.NOTE_ON, (types != events.NOTE_ON) & (types != events.IGNORE)
    assert note_ons.any() and torch.all(targets[note_ons][:, events.DURATION] != events.IGNORE)
    assert others.any() and torch.all(targets[others][:, events.DURATION] == events.IGNORE)
    assert torch.equal(mask_targets(targets), targets)  # masking twice changes nothing
