"""One process, 2 under torchrun, 2 tasks of submitit's local executor: the same run (gloo on CPU).

data.batch_size is global, so every world size trains on the same windows per step; the losses agree
to float tolerance (sums are reduced in another order), validation is sharded with padding windows
and all-reduced, so its bits/event is the single-process figure.
"""
from __future__ import annotations

import json
import pickle

import pytest

from midiformer.data.dataset import eval_window_count
from midiformer.data.store import Store
from midiformer.evaluate import evaluate
from midiformer.train.loop import train
from midiformer.train.metrics import read_metrics
from tests.scaleout.conftest import (
    MULTI,
    local_launcher_command,
    run,
    signal_during_step,
    torchrun_command,
)
from tests.train.conftest import compose_config

pytestmark = pytest.mark.slow  # subprocesses: torchrun, submitit's local executor

def assert_same_training(run_dir, reference):
    ours, theirs = read_metrics(run_dir), read_metrics(reference)
    train_loss = {m["step"]: m["train/loss"] for m in theirs if "train/loss" in m}
    val_bits = {m["step"]: m["val/bits_per_event"] for m in theirs if "val/bits_per_event" in m}
    assert [m["step"] for m in ours if "train/loss" in m] == list(train_loss)  # one line per step: rank 0's
    for m in ours:
        if "train/loss" in m:
            assert m["train/loss"] == pytest.approx(train_loss[m["step"]], rel=1e-4), m["step"]
        if "val/bits_per_event" in m:
            assert m["val/bits_per_event"] == pytest.approx(val_bits[m["step"]], rel=1e-4), m["step"]


def test_torchrun_two_processes_train_like_one(torchrun_two, one_process):
    run_dir = torchrun_two / "rank0"
    assert_same_training(run_dir, one_process)
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    rank1 = torchrun_two / "rank1"  # the folder rank 1's Hydra was given: it writes nothing there
    assert not rank1.exists() or not any(rank1.iterdir()), sorted(p.name for p in rank1.iterdir())
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_sharded_validation_equals_one_process_on_the_same_weights(torchrun_two, tmp_path):
    """Windows dealt to 2 ranks x 3 rows, padded at the end; one process with batches of 5 agrees."""
    run_dir = torchrun_two / "rank0"
    store = Store(json.loads((run_dir / "summary.json").read_text())["store"])
    assert eval_window_count(len(store.events("val")), 64) % 6, "no padding window: the test would prove less"
    last_val = [m for m in read_metrics(run_dir) if "val/bits_per_event" in m][-1]
    report = evaluate(compose_config(f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", "split=val",
                                     "batch_size=5", f"output={tmp_path / 'eval.json'}", config_name="evaluate"))
    assert report["model"]["bits_per_event"] == pytest.approx(last_val["val/bits_per_event"], rel=1e-6)
    assert report["model"]["bits_per_note"] == pytest.approx(last_val["val/bits_per_note"], rel=1e-6)


def test_local_launcher_two_tasks_train_like_one(tmp_path, cache_dir, one_process):
    run(local_launcher_command(tmp_path, cache_dir, 2))
    run_dir = tmp_path / "0"
    assert_same_training(run_dir, one_process)
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    objectives = []
    for result in sorted(tmp_path.glob(".submitit/*/*_result.pkl")):  # one per task: every rank ran the Hydra job
        status, job_return = pickle.loads(result.read_bytes())
        assert status == "success"
        objectives.append(job_return.return_value)
    best = json.loads((run_dir / "summary.json").read_text())["best_val_bits_per_event"]
    assert objectives == [best, best]


def test_a_run_stopped_on_one_process_resumes_on_two(tmp_path, cache_dir, one_process, monkeypatch):
    signal_during_step(monkeypatch, 13)
    with pytest.raises(SystemExit):
        train(compose_config(*MULTI, f"data.cache_dir={cache_dir}"), tmp_path)
    monkeypatch.undo()
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 13
    run(torchrun_command(tmp_path, cache_dir, 2))  # the same run folder: trainer.resume=auto
    assert_same_training(tmp_path, one_process)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"
