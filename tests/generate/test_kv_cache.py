"""The KV cache: incremental hidden states equal the full recomputation, for every position scheme."""
from __future__ import annotations

import pytest
import torch

from midiformer.model import MidiGPT
from midiformer.model.gpt import causal_mask_after
from tests.model.conftest import split, tiny_config, windows


@pytest.mark.parametrize("pos", ["learned", "rope", "rope_time"])
@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_cached_hidden_states_equal_the_full_window(songs, pos, norm_position):
    torch.manual_seed(0)
    model = MidiGPT(tiny_config(pos=pos, norm_position=norm_position)).eval()
    inputs, _ = split(windows(songs, batch=2, length=40))
    full = model.hidden(inputs)
    cache = model.new_kv_cache()
    # A prefill of 10 rows, a chunk of 3 (queries after cached keys), then one row at a time.
    pieces = [model.hidden(inputs[:, :10], cache), model.hidden(inputs[:, 10:13], cache)]
    pieces += [model.hidden(inputs[:, t:t + 1], cache) for t in range(13, 40)]
    assert len(cache) == 40
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)


def test_the_cache_cannot_grow_past_the_context(songs):
    model = MidiGPT(tiny_config()).eval()
    inputs, _ = split(windows(songs, batch=1, length=model.max_seq_len))
    cache = model.new_kv_cache()
    model.hidden(inputs, cache)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.hidden(inputs[:, :1], cache)


def test_new_queries_see_cached_keys_and_themselves_but_nothing_later():
    mask = causal_mask_after(3, 5, torch.device("cpu"))
    assert mask.tolist() == [[True, True, True, False, False],
                             [True, True, True, True, False],
                             [True, True, True, True, True]]
    assert causal_mask_after(1, 5, torch.device("cpu")) is None  # one new event sees every cached one
