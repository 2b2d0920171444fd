"""cascade_relative: each channel's last note found from the rows alone, and logits over the distance from it."""
from __future__ import annotations

import pytest
import torch

from midiformer.codec import events
from midiformer.model.played import RELATIVE_COLUMNS, CascadeRelativeHeads, last_note_by_channel, last_onset_gap
from tests.model.conftest import split, windows


def plain_last_notes(rows: torch.Tensor, carried: dict[int, tuple] | None = None) -> list[dict[int, tuple]]:
    """After each row, {channel: (pitch, velocity, duration) of its last note-on}: a dictionary updated row by row."""
    last, after = dict(carried or {}), []
    for row in rows.tolist():
        if row[events.TYPE] == events.NOTE_ON:
            last[row[events.CHANNEL]] = tuple(row[c] for c in RELATIVE_COLUMNS)
        after.append(dict(last))
    return after


def as_dict(notes: torch.Tensor) -> dict[int, tuple]:
    return {c: tuple(notes[c].tolist()) for c in range(16) if notes[c, 0] >= 0}


def test_last_note_by_channel_matches_a_row_by_row_dictionary(songs):
    inputs, _ = split(windows(songs, batch=4, length=200))
    notes = last_note_by_channel(inputs)
    assert notes.shape == (4, 200, 16, 3)
    for b in range(4):
        expected = plain_last_notes(inputs[b])
        assert [as_dict(notes[b, t]) for t in range(200)] == expected
        assert len(expected[-1]) >= 2  # the windows hold notes on several channels: the test can fail


def test_a_carried_state_fills_the_channels_the_window_has_not_played(songs):
    """The KV cache's path: the second half of a window, given the first half's last notes, sees what the
    whole window sees."""
    inputs, _ = split(windows(songs, batch=2, length=120))
    whole = last_note_by_channel(inputs)
    first = last_note_by_channel(inputs[:, :60])
    second = last_note_by_channel(inputs[:, 60:], carried=first[:, -1])
    assert torch.equal(second, whole[:, 60:])
    assert (last_note_by_channel(inputs[:, 60:]) != whole[:, 60:]).any()  # without it, some are unknown


def test_last_onset_gap_matches_a_row_by_row_scan(songs):
    inputs, _ = split(windows(songs, batch=4, length=200))
    gaps, seen = last_onset_gap(inputs), set()
    for b in range(4):
        last, expected = -1, []
        for row in inputs[b].tolist():
            if row[events.TYPE] == events.NOTE_ON and row[events.TIME] > 0:
                last = row[events.TIME]
            expected.append(last)
        assert gaps[b].tolist() == expected
        seen |= set(expected)
    assert len(seen) > 3  # several different gaps: the test can fail
    carried = last_onset_gap(inputs[:, 60:], carried=last_onset_gap(inputs[:, :60])[:, -1])
    assert torch.equal(carried, gaps[:, 60:])


def test_relative_logits_move_with_the_reference():
    """With the value tables and the reference embeddings off, a note's velocity logits are the distance
    logits alone: a reference 5 higher moves the whole distribution 5 up; no reference gives no term."""
    torch.manual_seed(0)
    heads = CascadeRelativeHeads(32, dict(events.VOCAB)).eval()
    with torch.no_grad():
        for table in heads.reference_embed:
            table.weight.zero_()
        heads.out[events.VELOCITY].weight.zero_(), heads.out[events.VELOCITY].bias.zero_()
    h = torch.randn(1, 32)
    chosen = torch.tensor([[events.NOTE_ON, 3, 9, 0, 60]])  # type, time, channel 9, instrument, pitch
    notes, gap = torch.full((1, 16, 3), -1), torch.full((1,), -1)

    def velocity_logits(reference: int) -> torch.Tensor:
        notes[0, 9, RELATIVE_COLUMNS.index(events.VELOCITY)] = reference
        memory = (notes, gap)
        with torch.no_grad():
            return heads.field_logits(h, events.VELOCITY, chosen, memory)[0]

    at_60, at_65 = velocity_logits(60), velocity_logits(65)
    torch.testing.assert_close(at_65[5:], at_60[:-5])
    assert not torch.allclose(at_65, at_60)
    assert torch.equal(velocity_logits(-1), torch.zeros(events.VOCAB["velocity"]))  # unknown: no distance term
    chosen[0, events.TYPE] = events.PROGRAM  # not a note: the channel's last note says nothing
    assert torch.equal(velocity_logits(65), torch.zeros(events.VOCAB["velocity"]))


def test_relative_inputs_embed_each_note_on_as_steps_from_its_channels_last_note(songs):
    from midiformer.model import MidiGPT
    from tests.model.conftest import tiny_config

    torch.manual_seed(0)
    model = MidiGPT(tiny_config(relative_inputs=True)).eval()
    inputs, _ = split(windows(songs, batch=2, length=80))
    with torch.no_grad():
        got = model.intervals(inputs)
    expected = torch.zeros_like(got)
    for b in range(2):
        last = {}
        for t, row in enumerate(inputs[b].tolist()):
            if row[events.TYPE] == events.NOTE_ON:
                if row[events.CHANNEL] in last:
                    for a, column in enumerate(RELATIVE_COLUMNS):
                        size = events.VOCAB[events.FIELDS[column]]
                        step = row[column] - last[row[events.CHANNEL]][a] + size - 1
                        expected[b, t] += model.interval_embed[a].weight[step].detach()
                last[row[events.CHANNEL]] = tuple(row[c] for c in RELATIVE_COLUMNS)
    torch.testing.assert_close(got, expected)
    assert (expected != 0).any(dim=-1).float().mean() > 0.3  # most rows are notes after another on their channel


@pytest.mark.parametrize("duration_from_gap", [False, True])
def test_relative_inputs_and_heads_agree_with_and_without_the_cache(songs, duration_from_gap):
    from midiformer.model import MidiGPT
    from tests.model.conftest import tiny_config

    torch.manual_seed(0)
    heads = {"name": "cascade_relative", "duration_from_gap": duration_from_gap}
    model = MidiGPT(tiny_config(relative_inputs=True, heads=heads, pos="rope_time")).eval()
    inputs, targets = split(windows(songs, batch=2, length=12))
    targets = targets.clamp(min=0)
    with torch.no_grad():
        logits = model(inputs, targets)
        cache = model.new_kv_cache()
        for t in range(inputs.shape[1]):
            uncached = model.next_context(inputs[:, :t + 1])
            cached = model.next_context(inputs[:, t:t + 1], cache)
            for k, name in enumerate(events.FIELDS):
                for h, memory in (uncached, cached):
                    torch.testing.assert_close(model.field_logits(h, k, targets[:, t, :k], memory), logits[name][:, t],
                                               atol=1e-5, rtol=1e-5)
