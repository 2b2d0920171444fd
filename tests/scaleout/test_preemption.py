"""SIGUSR2 / SIGTERM in one process: the step in flight finishes, last.pt is written, the process exits
128 + signal, and the rerun in the same folder ends exactly where an uninterrupted run does."""
from __future__ import annotations

import json
import signal

import pytest
import torch

from midiformer.train.loop import train
from tests.scaleout.conftest import losses, signal_during_step, weights
from tests.train.conftest import TINY, compose_config

STEPS = ["trainer.max_steps=6", "trainer.ckpt_every=0"]  # ckpt_every=0: the only mid-run checkpoint is the signal's


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(compose_config(*TINY, f"data.cache_dir={cache_dir}", *STEPS), run_dir)
    return run_dir


@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGTERM], ids=["SIGUSR2", "SIGTERM"])
def test_signal_during_a_step_checkpoints_exits_and_resumes_exactly(tiny_cfg, tmp_path, monkeypatch, uninterrupted,
                                                                   signum):
    handler_before = signal.getsignal(signum)
    signal_during_step(monkeypatch, 3, signum)
    with pytest.raises(SystemExit) as stopped:
        train(tiny_cfg(*STEPS), tmp_path)
    assert stopped.value.code == 128 + signum
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["steps"]) == ("preempted", 3)
    assert signal.getsignal(signum) == handler_before  # given back

    monkeypatch.undo()
    train(tiny_cfg(*STEPS), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"
    a, b = weights(uninterrupted), weights(tmp_path)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert losses(tmp_path) == losses(uninterrupted)


def test_a_signal_before_the_first_metrics_line_still_checkpoints(tiny_cfg, tmp_path, monkeypatch):
    """A preemption in step 1 of a run that logs every 100 steps: no metrics line yet, summary and last.pt
    written all the same (a search's trial stopped this early must not fail)."""
    signal_during_step(monkeypatch, 1, signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        train(tiny_cfg("trainer.log_every=100", *STEPS), tmp_path)
    assert stopped.value.code == 128 + signal.SIGTERM
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["final_train_loss"]) == ("preempted", 1, None)
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
