"""The unigram baseline from stored field counts, the MFU formula, and trainer.max_time's parser."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from midiformer.codec import events
from midiformer.common import ConfigError
from midiformer.data.store import Store, prepare_store
from midiformer.train import throughput
from midiformer.train.metrics import LN2, unigram_report
from midiformer.train.throughput import Throughput, flops_per_event, parse_max_time, peak_flops


def direct_unigram_bits(train_rows: np.ndarray, split_rows: np.ndarray) -> dict[str, float]:
    """The baseline computed the long way, from the rows themselves: add-one smoothed frequencies of each
    field on the training rows where it applies, summed over every target row (all but the first)."""
    targets = split_rows[1:]
    bits = {}
    for column, field in enumerate(events.FIELDS):
        train_values = [row[column] for row in train_rows if events.APPLIES[row[0], column]]
        frequency = np.ones(events.VOCAB[field])
        np.add.at(frequency, train_values, 1)
        log2_p = np.log2(frequency / frequency.sum())
        bits[field] = -sum(log2_p[row[column]] for row in targets if events.APPLIES[row[0], column])
    return bits


def test_unigram_from_the_store_equals_the_direct_computation(tiny_cfg):
    store = Store(prepare_store(tiny_cfg().data))
    train_rows, val_rows = np.asarray(store.events("train")), np.asarray(store.events("val"))
    expected = direct_unigram_bits(train_rows, val_rows)
    targets, n_events, n_notes = store.target_counts("val")
    assert n_events == len(val_rows) - 1 and n_notes == events.count_notes(val_rows[1:])
    report = unigram_report(store.field_counts("train"), targets, n_events, n_notes, seconds=60.0)
    for field in events.FIELDS:
        assert report[f"bits_per_event/{field}"] == pytest.approx(expected[field] / n_events, rel=1e-9), field
    total = sum(expected.values())
    assert report["bits_per_event"] == pytest.approx(total / n_events, rel=1e-9)
    assert report["bits_per_note"] == pytest.approx(total / n_notes, rel=1e-9)
    assert report["bits_per_second"] == pytest.approx(total / 60.0, rel=1e-9)
    assert LN2 == pytest.approx(np.log(2))


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)  # a lookup: no FLOPs counted
        self.up, self.down = nn.Linear(4, 8), nn.Linear(8, 2, bias=False)


def test_flops_per_event_and_mfu_on_a_known_case():
    # N = 4*8 + 8 (up) + 8*2 (down) = 56 matmul weights; L = 2, d = 4, T = 16
    assert flops_per_event(TwoLayers(), n_layer=2, d_model=4, seq_len=16) == 6 * 56 + 12 * 2 * 4 * 16
    meter = Throughput(events_per_step=100, flops_per_event=1000.0, peak=1e6)
    meter._seconds, meter._steps, meter._wait = 2.0, 10, 0.5  # 10 steps of 100 events in 2 s, 0.5 s waiting
    report = meter.interval()
    assert report == {"events_per_s": 500.0, "mfu": 500.0 * 1000.0 / 1e6, "data_wait_fraction": 0.25}
    assert Throughput(100, 1000.0, None)._report(10, 2.0, 0.0)["mfu"] is None


def test_peak_flops_known_gpus_by_name_and_the_option_wins(monkeypatch):
    cuda = torch.device("cuda", 0)
    for name, expected in [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                           ("NVIDIA A100-SXM4-40GB", 312e12), ("NVIDIA L4", 121e12), ("NVIDIA L40S", 362e12),
                           ("NVIDIA H200", 989e12), ("Some Future GPU", None)]:
        monkeypatch.setattr(throughput.torch.cuda, "get_device_name", lambda device=None, n=name: n)
        assert peak_flops(None, cuda) == expected, name
    assert peak_flops(123e12, cuda) == 123e12
    assert peak_flops(None, torch.device("cpu")) is None and peak_flops(5e11, torch.device("cpu")) == 5e11


@pytest.mark.parametrize("value, seconds", [("00:50:00", 3000), ("1:02:03:04", 93784), ("0:00:01.5", 1.5),
                                            (90, 90.0), (None, None)])
def test_max_time_forms(value, seconds):
    assert parse_max_time(value) == seconds


@pytest.mark.parametrize("value", ["50 minutes", "00:00:00", 0, -5, "1:2"])
def test_bad_max_time_is_refused_naming_the_option(value):
    with pytest.raises(ConfigError, match="trainer.max_time"):
        parse_max_time(value)
