"""cascade_cache: the values the song has played, counted (of every order, per channel and pitch, with the
song's counts from before the window), the same in training and generation, and logits that follow them."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from midiformer.codec import events, grammar
from midiformer.model.played import COUNTED_COLUMNS, CascadeCacheHeads, PlayedCounts
from tests.model.conftest import split, windows


def plain_counts(rows: list[list[int]], column: int, channel: int | None, pitch: int | None = None,
                 context: tuple = ()) -> Counter:
    """Row by row: how often each value of `column` appears on the note-ons of `rows` (on `channel`, None:
    any; of `pitch`), after `context`, the values before it on its channel (-1: none in the rows)."""
    history, found = {}, Counter()
    for row in rows:
        if row[events.TYPE] != events.NOTE_ON:
            continue
        key = row[events.CHANNEL] if channel is not None else None
        before = history.setdefault(key, [])
        padded = tuple([-1] * len(context) + before)[-len(context):] if context else ()
        if (channel is None or row[events.CHANNEL] == channel) and (pitch is None or row[events.NOTE] == pitch) \
                and padded == context:
            found[row[column]] += 1
        before.append(row[column])
    return found


def last_values(rows: list[list[int]], column: int, channel: int | None, order: int) -> tuple:
    """The last `order` values of `column` on the channel's note-ons (None: any), -1 padded, oldest first."""
    values = [row[column] for row in rows if row[events.TYPE] == events.NOTE_ON
              and (channel is None or row[events.CHANNEL] == channel)]
    return tuple([-1] * order + values)[-order:] if order else ()


def as_counter(counts: torch.Tensor) -> Counter:
    return Counter({v: int(c) for v, c in enumerate(counts.tolist()) if c})


def test_counts_of_every_order_match_a_row_by_row_count(songs):
    inputs, targets = split(windows(songs, batch=2, length=150))
    counts, channels, pitches = PlayedCounts(inputs), targets[..., events.CHANNEL].clamp(min=0), targets[..., events.NOTE].clamp(min=0)
    checked = Counter()
    for column in (events.TIME, events.CHANNEL) + COUNTED_COLUMNS:
        channel = None if column in (events.TIME, events.CHANNEL) else channels
        for order, by_row in enumerate(counts.count(column, channel, orders=2)):
            for b in range(2):
                rows = inputs[b].tolist()
                for t in range(0, 150, 9):
                    c = None if channel is None else int(channels[b, t])
                    expected = plain_counts(rows[:t + 1], column, c, context=last_values(rows[:t + 1], column, c, order))
                    assert as_counter(by_row[b, t]) == expected, (column, order, b, t)
                    checked[order] += len(expected) > 1
        if column in (events.VELOCITY, events.DURATION):
            by_pitch = counts.count(column, channels, pitches)[0]
            for t in range(0, 150, 9):
                rows = inputs[0].tolist()[:t + 1]
                assert as_counter(by_pitch[0, t]) == plain_counts(rows, column, int(channels[0, t]), int(pitches[0, t]))
    assert min(checked.values()) > 5  # several values seen at every order: the test can fail


def test_generation_counts_at_the_last_row_what_training_counts_there(songs):
    inputs, targets = split(windows(songs, batch=2, length=120))
    whole, last = PlayedCounts(inputs), PlayedCounts(inputs, last=True)
    for column in COUNTED_COLUMNS:
        for channel in range(16):
            chosen = torch.full((2,), channel)
            for at_last, in_whole in zip(last.count(column, chosen, orders=2),
                                         whole.count(column, chosen.view(2, 1).expand(2, 120), orders=2)):
                assert torch.equal(at_last, in_whole[:, -1])
    assert torch.equal(last.count(events.TIME, orders=2)[2], whole.count(events.TIME, orders=2)[2][:, -1])


def song_counts(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    played, gaps = zip(*(grammar.played_counts(song) for song in rows.numpy()))
    return torch.from_numpy(np.stack(played)), torch.from_numpy(np.stack(gaps))


def test_counts_of_the_song_before_a_window_make_it_count_as_the_longer_window(songs):
    """A window cut at row 60 of a longer one, given SongStart's counts of the 60 rows before it, counts
    (order 0) what the longer window counts from there on, in training and in generation."""
    inputs, targets = split(windows(songs, batch=2, length=120))
    assert not (inputs[..., events.TYPE] == events.START).any()  # one song: the test's claim holds
    before = song_counts(inputs[:, :60])
    whole, cut = PlayedCounts(inputs), PlayedCounts(inputs[:, 60:], before)
    channels = targets[..., events.CHANNEL].clamp(min=0)
    assert torch.equal(cut.count(events.TIME)[0], whole.count(events.TIME)[0][:, 60:])
    for column in COUNTED_COLUMNS:
        assert torch.equal(cut.count(column, channels[:, 60:])[0], whole.count(column, channels)[0][:, 60:])
    last = PlayedCounts(inputs[:, 60:], before, last=True)
    assert torch.equal(last.count(events.TIME)[0], whole.count(events.TIME)[0][:, -1])
    assert torch.equal(last.count(events.VELOCITY, channels[:, -1])[0], whole.count(events.VELOCITY, channels)[0][:, -1])
    assert not torch.equal(PlayedCounts(inputs[:, 60:]).count(events.TIME)[0], whole.count(events.TIME)[0][:, 60:])


def test_a_start_row_begins_the_counts_again(songs):
    """In a window that holds the end of one song and the start of the next, the rows after the START count
    only the new song's note-ons, whatever came before (the window's or SongStart's)."""
    first, second = (torch.from_numpy(song.astype(np.int64)) for song in songs[:2])
    assert second[0, events.TYPE] == events.START
    inputs = torch.cat([first[-50:], second[:70]])[None]
    before = (torch.ones(1, 16, grammar.COUNT_WIDTH, dtype=torch.int32), torch.ones(1, events.VOCAB["time"], dtype=torch.int32))
    joined, alone = PlayedCounts(inputs, before), PlayedCounts(second[None, :70])
    for in_joined, in_alone in zip(joined.count(events.TIME, orders=2), alone.count(events.TIME, orders=2)):
        assert torch.equal(in_joined[:, 50:], in_alone)
    channel = torch.full((1, 70), int(second[second[:, events.TYPE] == events.NOTE_ON][0, events.CHANNEL]))
    for in_joined, in_alone in zip(joined.count(events.NOTE, torch.cat([channel[:, :50], channel], 1), orders=2),
                                   alone.count(events.NOTE, channel, orders=2)):
        assert torch.equal(in_joined[:, 50:], in_alone)
    assert torch.equal(PlayedCounts(inputs, before, last=True).count(events.TIME)[0], alone.count(events.TIME)[0][:, -1])
    assert joined.count(events.TIME)[0][0, 49].sum() > 50  # before the START, the old song's counts (and `before`'s) count


def test_a_value_played_more_often_gets_more_probability():
    """With every other term off, the velocity logits are the cache's: 3 plays beat 1, 1 beats none, and
    another channel's plays do not count."""
    torch.manual_seed(0)
    heads = CascadeCacheHeads(32, dict(events.VOCAB), orders=0).eval()
    rows = []
    for velocity, channel in ((80, 2), (80, 2), (80, 2), (64, 2), (100, 5)):
        row = [0] * len(events.FIELDS)
        row[events.TYPE], row[events.CHANNEL], row[events.NOTE], row[events.VELOCITY] = events.NOTE_ON, channel, 60, velocity
        rows.append(row)
    memory = heads.memory(torch.tensor([rows]), torch.zeros(1, 5, 32), None, last=True)
    with torch.no_grad():
        heads.out[events.VELOCITY].weight.zero_(), heads.out[events.VELOCITY].bias.zero_()
        heads.relative_out["velocity"].weight.zero_(), heads.relative_out["velocity"].bias.zero_()
        logits = heads.field_logits(torch.randn(1, 32), events.VELOCITY, torch.tensor([[events.NOTE_ON, 0, 2, 0, 60]]), memory)[0]
    assert logits[80] > logits[64] > logits[100]
    assert logits[100] == logits[1]  # channel 5's velocity is not channel 2's
