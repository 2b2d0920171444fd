"""Training's grammar-masked likelihood and the sampler's step-by-step grammar give the same probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from midiformer.codec import events, grammar
from midiformer.data.dataset import split_inputs_targets
from midiformer.generate.grammar import SongState
from midiformer.model import MidiGPT
from tests.model.conftest import tiny_config

LENGTH = 60


@pytest.mark.parametrize("heads, pos", [("cascade", "learned"), ("parallel", "learned"), ("cascade_lookup", "rope_time"),
                                        ("cascade_relative", "rope_time"),
                                        ({"name": "cascade_relative", "duration_from_gap": True}, "rope_time"),
                                        ("cascade_cache", "rope_time")])
def test_teacher_forced_logprobs_equal_step_by_step_ones(songs, heads, pos):
    """Every field of every row of a real song's opening: log p under field_masks (training, evaluation)
    equals log p when the rows are fed one field at a time through field_logits and SongState.allowed
    (generation)."""
    torch.manual_seed(0)
    model = MidiGPT(tiny_config(heads=heads, pos=pos, beat_phase=True)).eval()
    song = torch.from_numpy(np.asarray(songs[0][:LENGTH + 1], np.int64))[None]
    inputs, targets = split_inputs_targets(song)
    masks = grammar.field_masks(inputs, targets, grammar.SongStart.before(song[0].numpy(), np.array([0, 1]),
                                                                          np.array([0])))
    with torch.no_grad():
        logits = model(inputs, targets)
    state = SongState(1, ticks_per_beat=96)
    state.update(inputs[:, 0])
    checked = 0
    for t in range(LENGTH):
        row = song[0, t + 1]
        with torch.no_grad():  # what the sampler gives field_logits after rows 0..t (no cache)
            h, memory = model.next_context(inputs[:, :t + 1])
        for k, name in enumerate(events.FIELDS):
            if targets[0, t, k] == events.IGNORE:
                continue
            teacher = F.log_softmax(logits[name][0, t].masked_fill(~masks[name][0, t], -torch.inf), -1)[row[k]]
            with torch.no_grad():
                field_logits = model.field_logits(h, k, row[None, :k], memory)[0]
            allowed = state.allowed(k, row[None, :k])[0]
            assert torch.equal(allowed, masks[name][0, t]), (t, name)
            step = F.log_softmax(field_logits.masked_fill(~allowed, -torch.inf), -1)[row[k]]
            torch.testing.assert_close(teacher, step, rtol=1e-4, atol=1e-5)
            checked += 1
        state.update(row[None])
    assert checked > 3 * LENGTH
