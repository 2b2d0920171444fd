"""The training data path: prefetched batches, exact resume, start-up that reads no split,
trainer.max_time, and the speed figures of metrics.jsonl and summary.json."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from midiformer.data.store import Store
from midiformer.train.checkpoint import load_checkpoint
from midiformer.train.loop import Trainer, train
from midiformer.train.metrics import read_metrics
from midiformer.train.prefetch import BatchSource, apply
from midiformer.train.throughput import flops_per_event


def equal_weights(a, b) -> None:
    a, b = (torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model"] for d in (a, b))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def tensors(batch) -> list[torch.Tensor]:
    """Every tensor of a batch (inputs, targets, the song state before each window), in order."""
    found = []
    apply(lambda t: found.append(t) or t, batch)
    return found


def make_trainer(cfg, run_dir) -> Trainer:
    from midiformer.train import distributed

    return Trainer(cfg, run_dir, distributed.DistEnv(), torch.device("cpu"))


def test_prefetched_batches_equal_the_synchronous_ones(tiny_cfg, tmp_path):
    trainer = make_trainer(tiny_cfg("data/augment=all", "optim.grad_accum_steps=2"), tmp_path)
    ahead = BatchSource(trainer.make_batch, start=5, device=torch.device("cpu"), depth=3)
    inline = BatchSource(trainer.make_batch, start=5, device=torch.device("cpu"), depth=0)
    try:
        for index in range(5, 17):
            a, b, direct = (tensors(batch) for batch in (ahead.next(), inline.next(), trainer.make_batch(index)))
            assert len(a) == len(b) == len(direct) >= 3
            for x, y, z in zip(a, b, direct):
                assert torch.equal(x, y) and torch.equal(x, z), index
        assert ahead.take_wait() >= 0 and ahead.take_wait() == 0
    finally:
        ahead.close()
    assert not ahead._thread.is_alive()


def test_an_error_building_a_batch_comes_out_of_next_with_its_index():
    def make(index):
        if index == 3:
            raise ValueError("window 3 is broken")
        return torch.full((2,), index)

    source = BatchSource(make, start=0, device=torch.device("cpu"), depth=2)
    assert [int(source.next()[0]) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="window 3"):
        source.next()


def test_prefetch_depth_changes_nothing_and_resume_stays_bitwise(tiny_cfg, tmp_path):
    options = ["data/augment=all", "optim.grad_accum_steps=2", "trainer.max_steps=6"]
    train(tiny_cfg(*options, "trainer.prefetch=3"), tmp_path / "ahead")
    train(tiny_cfg(*options, "trainer.prefetch=0"), tmp_path / "inline")
    train(tiny_cfg(*options, "trainer.prefetch=3", "trainer.max_steps=4"), tmp_path / "resumed")  # last.pt at 4
    train(tiny_cfg(*options, "trainer.prefetch=3"), tmp_path / "resumed")  # resumes at 4, prefetching from there
    equal_weights(tmp_path / "ahead", tmp_path / "inline")
    equal_weights(tmp_path / "ahead", tmp_path / "resumed")
    # (all 6 steps are in the warm-up, so the shorter first leg has the same learning rates)
    losses = {d: [(m["step"], m["train/loss"]) for m in read_metrics(tmp_path / d) if "train/loss" in m]
              for d in ("ahead", "resumed")}
    assert losses["ahead"] == losses["resumed"]


class RowSpy:
    """A split's memory map that records every read: the rows of each slice, and whole-split reads."""

    def __init__(self, rows: np.ndarray, reads: list, split: str):
        self.rows, self.reads, self.split = rows, reads, split
        self.shape, self.dtype, self.ndim = rows.shape, rows.dtype, rows.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        part = self.rows[key]
        self.reads.append((self.split, len(part) if np.ndim(part) == 2 else 1))
        return part

    def __array__(self, dtype=None, copy=None):
        self.reads.append((self.split, "whole"))
        return np.asarray(self.rows, dtype=dtype)


def test_start_up_reads_no_split_and_steps_read_only_their_songs(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg("trainer.max_steps=2", "trainer.val_every=0", "trainer.val_batches=1")
    reads: list = []
    real_events = Store.events
    monkeypatch.setattr(Store, "events", lambda store, split: RowSpy(real_events(store, split), reads, split))
    trainer = make_trainer(cfg, tmp_path)
    baseline = trainer.unigram_baseline()
    assert baseline["unigram/val/bits_per_event"] > 0
    assert reads == [("val", 1)]  # start-up, baseline included: the validation split's first row, nothing more
    trainer.fit()
    store = trainer.store
    longest_song = int(max(np.diff(store.offsets(split)).max() for split in ("train", "val")))
    assert all(size != "whole" for _, size in reads)
    # a step reads its windows and the song rows before each (the grammar's state), never a split
    assert max(size for _, size in reads) <= longest_song + cfg.data.seq_len + 1


def test_max_time_stops_before_it_with_a_checkpoint_and_summary(tiny_cfg, tmp_path):
    cfg = tiny_cfg("trainer.max_steps=100000", "trainer.max_time=3", "trainer.val_every=0", "trainer.val_batches=2",
                   "trainer.log_every=5")
    train(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "time_limit" and 0 < summary["steps"] < 100000
    assert summary["max_time_s"] == 3 and summary["final_val_bits_per_event"] > 0
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == summary["steps"] and state["elapsed"] <= summary["wall_time_s"]
    # the budget counts across resumes (the checkpoint's elapsed): with less than that, a restart takes no step
    train(tiny_cfg("trainer.max_steps=100000", f"trainer.max_time={state['elapsed'] / 2}", "trainer.val_every=0",
                   "trainer.val_batches=2", "trainer.log_every=5"), tmp_path)
    again = json.loads((tmp_path / "summary.json").read_text())
    assert (again["status"], again["steps"]) == ("time_limit", summary["steps"])


def test_speed_figures_in_metrics_and_summary(tiny_cfg, tmp_path):
    cfg = tiny_cfg("trainer.peak_flops=1e12", "trainer.log_every=2")
    train(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    trainer_model = make_trainer(cfg, tmp_path / "probe").model
    expected_flops = flops_per_event(trainer_model, cfg.model.n_layer, cfg.model.d_model, cfg.data.seq_len)
    lines = [m for m in read_metrics(tmp_path) if "train/loss" in m]
    assert [m["step"] for m in lines] == [2, 4, 6]  # speed over each interval between host syncs
    for m in lines:
        assert m["events_per_s"] > 0 and 0 <= m["data_wait_fraction"] <= 1
        assert m["mfu"] == pytest.approx(m["events_per_s"] * expected_flops / 1e12)
    assert summary["flops_per_event"] == expected_flops and summary["peak_flops"] == 1e12
    assert summary["mfu"] == pytest.approx(summary["events_per_s"] * expected_flops / 1e12)
    assert 0 <= summary["data_wait_fraction"] <= 1 and summary["startup_s"] > 0
    no_peak = tiny_cfg("trainer.max_steps=2")
    train(no_peak, tmp_path / "cpu")
    assert json.loads((tmp_path / "cpu" / "summary.json").read_text())["mfu"] is None  # no MFU without a peak
