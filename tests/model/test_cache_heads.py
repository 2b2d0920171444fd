"""cascade_cache: the values each channel has played in the window, counted two ways (training's masks,
generation's carried tables), and logits that follow the counts."""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from midiformer.codec import events, grammar
from midiformer.model.heads import COUNTED_COLUMNS, CarriedCounts, CascadeCacheHeads, WindowCounts
from tests.model.conftest import split, windows


def plain_counts(rows: list[list[int]], column: int, channel: int | None) -> Counter:
    """How often each value of `column` appears on the note-ons of `rows` (on `channel`; None: any)."""
    return Counter(row[column] for row in rows if row[events.TYPE] == events.NOTE_ON
                   and (channel is None or row[events.CHANNEL] == channel))


def as_counter(counts: torch.Tensor) -> Counter:
    return Counter({v: int(c) for v, c in enumerate(counts.tolist()) if c})


def test_window_counts_match_a_row_by_row_count_for_the_chosen_channel(songs):
    inputs, targets = split(windows(songs, batch=3, length=150))
    counts, channels = WindowCounts(inputs), targets[..., events.CHANNEL].clamp(min=0)
    checked = 0
    for column in COUNTED_COLUMNS:
        by_row = counts.channel(column, channels)
        for b in range(3):
            rows = inputs[b].tolist()
            for t in range(0, 150, 7):
                expected = plain_counts(rows[:t + 1], column, int(channels[b, t]))
                assert as_counter(by_row[b, t]) == expected
                checked += len(expected) > 1
    times = counts.time()
    for b in range(3):
        rows = inputs[b].tolist()
        assert [as_counter(times[b, t]) for t in (0, 40, 149)] == [plain_counts(rows[:t + 1], events.TIME, None)
                                                                   for t in (0, 40, 149)]
    assert checked > 20  # many rows see several values: the test can fail


def test_carried_counts_after_the_window_equal_the_window_counts_at_its_last_row(songs):
    """Generation's tables (carried over a KV cache's calls) count what training's masks count."""
    inputs, targets = split(windows(songs, batch=2, length=120))
    whole = WindowCounts(inputs)
    carried = CarriedCounts(inputs[:, 60:], carried=CarriedCounts(inputs[:, :60]))
    assert torch.equal(carried.time(), whole.time()[:, -1])
    for channel in range(16):
        chosen = torch.full((2,), channel)
        for column in COUNTED_COLUMNS:
            assert torch.equal(carried.channel(column, chosen), whole.channel(column, chosen.view(2, 1).expand(2, 120))[:, -1])
    assert not torch.equal(CarriedCounts(inputs[:, 60:]).time(), whole.time()[:, -1])  # the carried part counts


def test_counts_of_the_song_before_a_window_make_it_count_as_the_longer_window(songs):
    """A window cut at row 60 of a longer one, given SongStart's counts of the 60 rows before it (and
    generation's tables, given the same), counts what the longer window counts from there on."""
    inputs, targets = split(windows(songs, batch=2, length=120))
    assert not (inputs[..., events.TYPE] == events.START).any()  # one song: the test's claim holds
    played, gaps = zip(*(grammar.played_counts(rows) for rows in inputs[:, :60].numpy()))
    before = (torch.from_numpy(np.stack(played)), torch.from_numpy(np.stack(gaps)))
    whole, cut = WindowCounts(inputs), WindowCounts(inputs[:, 60:], before)
    channels = targets[..., events.CHANNEL].clamp(min=0)
    assert torch.equal(cut.time(), whole.time()[:, 60:])
    for column in COUNTED_COLUMNS:
        assert torch.equal(cut.channel(column, channels[:, 60:]), whole.channel(column, channels)[:, 60:])
    carried = CarriedCounts(inputs[:, 60:], before=before)
    assert torch.equal(carried.time(), whole.time()[:, -1])
    assert torch.equal(carried.channel(events.VELOCITY, channels[:, -1]), whole.channel(events.VELOCITY, channels)[:, -1])
    assert not torch.equal(WindowCounts(inputs[:, 60:]).time(), whole.time()[:, 60:])  # the counts before matter


def test_a_start_row_begins_the_counts_again(songs):
    """In a window that holds the end of one song and the start of the next, the rows after the START count
    only the new song's note-ons, whatever came before (the window's or SongStart's)."""
    first, second = (torch.from_numpy(song.astype(np.int64)) for song in songs[:2])
    assert second[0, events.TYPE] == events.START
    inputs = torch.cat([first[-50:], second[:70]])[None]
    before = (torch.ones(1, 16, grammar.COUNT_WIDTH, dtype=torch.int32), torch.ones(1, events.VOCAB["time"], dtype=torch.int32))
    joined, alone = WindowCounts(inputs, before), WindowCounts(second[None, :70])
    assert torch.equal(joined.time()[:, 50:], alone.time())
    channel = torch.full((1, 70), int(second[second[:, events.TYPE] == events.NOTE_ON][0, events.CHANNEL]))
    assert torch.equal(joined.channel(events.NOTE, torch.cat([channel[:, :50], channel], 1))[:, 50:],
                       alone.channel(events.NOTE, channel))
    assert torch.equal(CarriedCounts(inputs, before=before).time(), alone.time()[:, -1])
    assert joined.time()[0, 49].sum() > 50  # before the START, the old song's counts (and `before`'s) count


def test_a_value_played_more_often_gets_more_probability():
    """With every other term off, the velocity logits are b log(c + a): 3 plays beat 1, 1 beats none, and
    another channel's plays do not count."""
    torch.manual_seed(0)
    heads = CascadeCacheHeads(32, dict(events.VOCAB)).eval()
    rows = []
    for velocity, channel in ((80, 2), (80, 2), (80, 2), (64, 2), (100, 5)):
        row = [0] * len(events.FIELDS)
        row[events.TYPE], row[events.CHANNEL], row[events.NOTE], row[events.VELOCITY] = events.NOTE_ON, channel, 60, velocity
        rows.append(row)
    inputs = torch.tensor([rows])
    memory = heads.memory(inputs, torch.zeros(1, 5, 32), None, last=True)
    with torch.no_grad():
        heads.out[events.VELOCITY].weight.zero_(), heads.out[events.VELOCITY].bias.zero_()
        heads.relative_out["velocity"].weight.zero_(), heads.relative_out["velocity"].bias.zero_()
        logits = heads.field_logits(torch.randn(1, 32), events.VELOCITY, torch.tensor([[events.NOTE_ON, 0, 2, 0, 60]]), memory)[0]
    assert logits[80] > logits[64] > logits[100]
    assert logits[100] == logits[1]  # channel 5's velocity is not channel 2's
