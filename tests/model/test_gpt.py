"""MidiGPT: shapes, causality for both head types, positions, the sampler entry point."""
from __future__ import annotations

import pytest
import torch

from midiformer.codec import events
from midiformer.model import MidiGPT
from tests.model.conftest import split, tiny_config, windows


def build(**overrides) -> MidiGPT:
    torch.manual_seed(0)
    return MidiGPT(tiny_config(**overrides)).eval()


def test_logits_have_one_table_per_field(songs):
    inputs, targets = split(windows(songs, batch=2, length=16))
    logits = build()(inputs, targets)
    assert list(logits) == list(events.FIELDS)
    for name, table in logits.items():
        assert table.shape == (2, 16, events.VOCAB[name])


@pytest.mark.parametrize("pos", ["learned", "rope", "rope_time"])
@pytest.mark.parametrize("heads", ["parallel", "cascade", "cascade_lookup", "cascade_relative", "cascade_cache"])
def test_logits_at_t_do_not_see_later_events(songs, pos, heads):
    model = build(pos=pos, heads=heads)
    inputs, targets = split(windows(songs, batch=1, length=24))
    t = 10
    changed_inputs, changed_targets = inputs.clone(), targets.clone()
    changed_inputs[:, t + 1 :] = (changed_inputs[:, t + 1 :] + 1) % 7  # every later event (values stay valid)
    changed_targets[:, t + 1 :] = 0
    before, after = model(inputs, targets), model(changed_inputs, changed_targets)
    for name in events.FIELDS:
        torch.testing.assert_close(before[name][:, : t + 1], after[name][:, : t + 1])
        assert not torch.allclose(before[name][:, t + 1 :], after[name][:, t + 1 :])


@pytest.mark.parametrize("heads", ["cascade", "cascade_lookup", "cascade_relative", "cascade_cache"])
def test_cascade_field_k_sees_only_chosen_fields_before_k(songs, heads):
    model = build(heads=heads, pos="rope_time")
    inputs, targets = split(windows(songs, batch=1, length=12))
    targets = targets.clamp(min=0)  # every field present, so that each one can be changed
    t = 5
    base = model(inputs, targets)
    for j, changed_field in enumerate(events.FIELDS):
        changed = targets.clone()
        changed[0, t, j] = (changed[0, t, j] + 1) % events.VOCAB[changed_field]
        logits = model(inputs, changed)
        for k, name in enumerate(events.FIELDS):
            torch.testing.assert_close(logits[name][:, :t], base[name][:, :t])  # other positions: untouched
            torch.testing.assert_close(logits[name][:, t + 1 :], base[name][:, t + 1 :])
            same = torch.allclose(logits[name][:, t], base[name][:, t])
            assert same == (k <= j), f"field {name} at t vs a change of {changed_field}"


def test_parallel_heads_ignore_targets(songs):
    model = build()
    inputs, targets = split(windows(songs, batch=2, length=12))
    with_targets, without = model(inputs, targets), model(inputs)
    for name in events.FIELDS:
        torch.testing.assert_close(with_targets[name], without[name])


def test_cascade_needs_targets(songs):
    inputs, _ = split(windows(songs, batch=1, length=8))
    with pytest.raises(ValueError, match="targets"):
        build(heads="cascade")(inputs)


@pytest.mark.parametrize("heads", ["parallel", "cascade", "cascade_lookup", "cascade_relative", "cascade_cache"])
@pytest.mark.parametrize("pos", ["learned", "rope_time"])
def test_field_logits_match_forward_at_every_position_with_and_without_the_cache(songs, heads, pos):
    model = build(heads=heads, pos=pos)
    inputs, targets = split(windows(songs, batch=2, length=12))
    targets = targets.clamp(min=0)
    logits = model(inputs, targets)
    cache = model.new_kv_cache()
    for t in range(inputs.shape[1]):
        uncached = model.next_context(inputs[:, :t + 1])
        cached = model.next_context(inputs[:, t:t + 1], cache)  # one row at a time, as the sampler feeds it
        for k, name in enumerate(events.FIELDS):
            chosen = targets[:, t, :k]
            for h, memory in (uncached, cached):
                torch.testing.assert_close(model.field_logits(h, k, chosen, memory), logits[name][:, t],
                                           atol=1e-5, rtol=1e-5)


def test_the_look_up_reads_the_rows_of_the_window(songs):
    """cascade_lookup's velocity at t depends on an earlier row's velocity through the look-up alone:
    with it switched off (its output projection zeroed), the dependence through h remains, and changes."""
    model = build(heads="cascade_lookup", pos="rope_time")
    inputs, targets = split(windows(songs, batch=1, length=16))
    targets = targets.clamp(min=0)
    changed = inputs.clone()
    changed[0, 3, events.VELOCITY] = (changed[0, 3, events.VELOCITY] + 40) % 128
    with_look = (model(inputs, targets)["velocity"] - model(changed, targets)["velocity"]).abs().max()
    with torch.no_grad():
        model.heads.proj.weight.zero_(), model.heads.proj.bias.zero_()
    without_look = (model(inputs, targets)["velocity"] - model(changed, targets)["velocity"]).abs().max()
    assert with_look > 0 and without_look > 0 and not torch.isclose(with_look, without_look)


def test_rope_depends_on_relative_position_only():
    from midiformer.model.positions import apply_rope, rope_angles

    cos, sin = rope_angles(head_dim=8, max_seq_len=32)
    q, k = torch.randn(8), torch.randn(8)
    def score(i, j):
        qi = apply_rope(q.view(1, 1, 1, 8), cos[i : i + 1], sin[i : i + 1])
        kj = apply_rope(k.view(1, 1, 1, 8), cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum()
    torch.testing.assert_close(score(3, 1), score(20, 18))
    torch.testing.assert_close(apply_rope(q.view(1, 1, 1, 8), cos[:1], sin[:1]).flatten(), q)  # position 0: identity


def test_rope_time_scores_depend_on_the_differences_in_rows_and_ticks_only():
    from midiformer.model.positions import TimeRotaryPositions, apply_rope

    positions = TimeRotaryPositions(d_model=32, n_head=2, max_seq_len=64, ticks_per_beat=96)
    q, k = torch.randn(16), torch.randn(16)
    def score(i, j, tick_i, tick_j):
        ticks = torch.tensor([[tick_i, tick_j]])
        _, (cos, sin) = positions(torch.zeros(1, 2, 32), 0, ticks)  # rows 0 and 1 of a window
        _, (cos_i, sin_i) = positions(torch.zeros(1, 1, 32), i, ticks[:, :1])
        _, (cos_j, sin_j) = positions(torch.zeros(1, 1, 32), j, ticks[:, 1:])
        qi, kj = apply_rope(q.view(1, 1, 1, 16), cos_i, sin_i), apply_rope(k.view(1, 1, 1, 16), cos_j, sin_j)
        return (qi * kj).sum()
    # the same gaps deep into a long song: the angles keep their precision (float64, modulo 2 pi)
    torch.testing.assert_close(score(5, 2, 480, 96), score(40, 37, 3_000_384, 2_999_999 + 1), atol=1e-4, rtol=1e-4)
    assert not torch.isclose(score(5, 2, 480, 96), score(5, 2, 480, 120))  # another time apart: another score
    assert not torch.isclose(score(5, 2, 480, 96), score(6, 2, 480, 96))   # another row apart, too


def test_rope_time_hidden_states_do_not_depend_on_where_the_window_starts_in_time(songs):
    model = build(pos="rope_time")
    inputs, _ = split(windows(songs, batch=2, length=24))
    at_zero = model.hidden(inputs, start_ticks=torch.tensor([0, 0]))
    later = model.hidden(inputs, start_ticks=torch.tensor([96 * 4, 1_234_567]))
    torch.testing.assert_close(later, at_zero, atol=1e-5, rtol=1e-5)  # only differences of time count


def test_longer_than_max_seq_len_is_refused(songs):
    inputs, _ = split(windows(songs, batch=1, length=65))
    with pytest.raises(ValueError, match="max_seq_len"):
        build()(inputs)


def test_rope_time_refuses_a_time_share_outside_0_to_1():
    from midiformer.common import ConfigError
    from midiformer.model.positions import TimeRotaryPositions

    with pytest.raises(ConfigError, match=r"model.pos.time_share=1.5 must be in \[0, 1\]"):
        TimeRotaryPositions(d_model=32, n_head=2, max_seq_len=64, time_share=1.5)
    for share in (0.0, 1.0):  # every pair on one clock: still a rotation of the right shape
        _, (cos, _) = TimeRotaryPositions(d_model=32, n_head=2, max_seq_len=64, time_share=share)(
            torch.zeros(1, 4, 32), 0, torch.arange(4).view(1, 4))
        assert cos.shape == (1, 1, 4, 8)
