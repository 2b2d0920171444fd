"""The training loop on real data: learning, checkpoints, resume, SWA, bad losses, bad options."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time

import pytest
import torch

from midiformer.codec import events
from midiformer.common import ConfigError, TrainingError
from midiformer.train import checkpoint
from midiformer.train.config import validate_config
from midiformer.train.loop import dropout_seed, train
from midiformer.train.metrics import read_metrics
from tests.conftest import REPO
from tests.train.conftest import tiny_command


@pytest.mark.slow  # 150 steps: 6.6 s on a quiet core, 18 s on a loaded one
def test_short_run_goes_below_the_unigram_baseline(tiny_cfg, tmp_path):
    cfg = tiny_cfg("trainer.max_steps=150", "trainer.val_every=150", "optim.lr=3e-3", "optim.warmup_steps=20",
                   "data.batch_size=16")
    best = train(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_val_bits_per_event"] == best
    assert best < summary["unigram_baseline"]["unigram/val/bits_per_event"] - 1.0
    for key in ("git_commit", "seed", "versions", "wall_time_s", "events_per_s", "final_train_loss"):
        assert key in summary
    assert (tmp_path / "config.yaml").read_text().count("d_model") == 1


def test_the_summary_names_the_commit_the_run_started_from(tiny_cfg, tmp_path, monkeypatch):
    """A commit made while a run trains is not the code it ran: the commit is read once, at the start."""
    from midiformer import provenance
    from midiformer.train import loop

    head = {"commit": "a" * 40}
    monkeypatch.setattr(provenance, "git_commit", lambda: head["commit"])
    write_summary = loop.write_summary

    def commit_meanwhile(*args, **kwargs):  # someone commits while the run trains
        head["commit"] = "b" * 40
        return write_summary(*args, **kwargs)

    monkeypatch.setattr(loop, "write_summary", commit_meanwhile)
    train(tiny_cfg("trainer.max_steps=2"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["git_commit"] == "a" * 40


def test_run_folder_records_metrics_per_field(tiny_cfg, tmp_path):
    train(tiny_cfg(), tmp_path)
    metrics = read_metrics(tmp_path)
    train_lines = [m for m in metrics if "train/loss" in m]
    val_lines = [m for m in metrics if "val/bits_per_event" in m]
    assert [m["step"] for m in train_lines] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in val_lines] == [3, 6]
    for field in events.FIELDS:
        assert math.isfinite(train_lines[0][f"train/loss/{field}"])
        assert val_lines[0][f"val/bits_per_event/{field}"] > 0
    assert val_lines[-1]["val/bits_per_event"] == pytest.approx(
        sum(val_lines[-1][f"val/bits_per_event/{f}"] for f in events.FIELDS))
    assert {"lr", "events_per_s", "val/bits_per_note", "val/bits_per_second"} <= set(train_lines[0]) | set(val_lines[0])


def test_checkpoints_load_with_weights_only(tiny_cfg, tmp_path):
    train(tiny_cfg(), tmp_path)
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "checkpoints" / name, weights_only=True)
        assert state["step"] in (3, 6) and "rng" in state and "optimizer" in state
    model, cfg = checkpoint.model_from_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert cfg.model.d_model == model.d_model


def test_crash_during_checkpoint_write_keeps_the_previous_one(tiny_cfg, tmp_path, monkeypatch):
    train(tiny_cfg(), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    before = last.read_bytes()

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError):
        checkpoint.save_checkpoint({"step": 99}, last)
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]  # no temporary left behind


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a midiformer checkpoint"):
        checkpoint.load_checkpoint(bogus)
    torch.save({"weights": torch.zeros(1)}, bogus)
    with pytest.raises(checkpoint.CheckpointError, match="marker"):
        checkpoint.load_checkpoint(bogus)


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def _losses(run_dir):
    return [(m["step"], m.get("train/loss"), m.get("val/bits_per_event")) for m in read_metrics(run_dir)]


@pytest.mark.slow
def test_kill_9_then_resume_is_bitwise_equal(cache_dir, tmp_path):
    steps = ["trainer.max_steps=40", "trainer.ckpt_every=4", "trainer.val_every=10"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    subprocess.run(tiny_command(straight, cache_dir, *steps), check=True, env=env, cwd=REPO, capture_output=True)

    process = subprocess.Popen(tiny_command(interrupted, cache_dir, *steps), env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (interrupted / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the middle of later steps
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert killed_at < 40, "the run finished before it could be killed"

    subprocess.run(tiny_command(interrupted, cache_dir, *steps), check=True, env=env, cwd=REPO, capture_output=True)
    a, b = _weights(straight), _weights(interrupted)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert _losses(straight) == _losses(interrupted)


def test_swa_average_is_evaluated_and_checkpointed(tiny_cfg, tmp_path):
    cfg = tiny_cfg("optim/swa=on", "optim.swa.start_step=2", "optim.swa.update_every=1", "optim.swa.anneal_steps=2")
    train(cfg, tmp_path)
    val_lines = [m for m in read_metrics(tmp_path) if "val/swa/bits_per_event" in m]
    assert [m["step"] for m in val_lines] == [3, 6]
    averaged, _ = checkpoint.model_from_checkpoint(tmp_path / "checkpoints" / "last.pt", averaged=True)
    trained, _ = checkpoint.model_from_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert any(not torch.equal(p, q) for p, q in zip(averaged.parameters(), trained.parameters()))
    assert json.loads((tmp_path / "summary.json").read_text())["best_swa_val_bits_per_event"] > 0


def test_swa_run_resumes_exactly(tiny_cfg, tmp_path):
    swa = ["optim/swa=on", "optim.swa.start_step=2", "optim.swa.update_every=1", "optim.swa.anneal_steps=3"]
    train(tiny_cfg(*swa), tmp_path / "straight")
    train(tiny_cfg(*swa, "trainer.max_steps=4"), tmp_path / "resumed")  # stops at 4; checkpoint at 3 and 4
    cfg = tiny_cfg(*swa)
    train(cfg, tmp_path / "resumed")
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("straight", "resumed"))
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for name in a["swa"]["model"]:
        assert torch.equal(a["swa"]["model"][name], b["swa"]["model"][name]), name


def test_nonfinite_loss_stops_the_run_naming_the_step(tiny_cfg, tmp_path, monkeypatch):
    import midiformer.train.loop as train_module

    real = train_module.masked_field_losses
    calls = {"n": 0}

    def poisoned(logits, targets, masks=None):
        calls["n"] += 1
        nats, n = real(logits, targets, masks)
        if calls["n"] == 3:
            nats["note"] = nats["note"] * float("nan")
        return nats, n

    monkeypatch.setattr(train_module, "masked_field_losses", poisoned)
    with pytest.raises(TrainingError, match="step 2: training loss is nan"):
        train(tiny_cfg(), tmp_path / "stop")
    calls["n"] = 0
    train(tiny_cfg("trainer.nonfinite_loss=skip"), tmp_path / "skip")
    assert json.loads((tmp_path / "skip" / "summary.json").read_text())["skipped_steps"] == 1


@pytest.mark.parametrize("override, option", [
    ("model.d_model=33", "model.d_model"),
    ("model.n_layer=0", "model.n_layer"),
    ("model.dropout=1.0", "model.dropout"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-1e-3", "optim.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.seq_len=100000", "data.seq_len"),
    ("trainer.max_steps=-5", "trainer.max_steps"),
    ("trainer.device=tpu", "trainer.device"),
    ("optim.grad_accum_steps=3", "data.batch_size"),
    ("logger.wandb.mode=sometimes", "logger.wandb.mode"),
    ("model.pos=alibi", "model.pos"),
    ("model.norm.name=batchnorm", "model.norm"),
])
def test_bad_options_are_refused_naming_the_option(tiny_cfg, override, option):
    with pytest.raises(ConfigError) as error:
        validate_config(tiny_cfg(override))
    assert option in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_bad_option_on_the_command_line_is_one_line(cache_dir, tmp_path):
    result = subprocess.run(tiny_command(tmp_path, cache_dir, "model.d_model=33"), cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: model.d_model=33 must be divisible by model.n_head=2"]
    assert not (tmp_path / "checkpoints").exists()


def test_dropout_masks_differ_between_ranks_and_repeat_on_resume():
    assert dropout_seed(0, 5, 0, 0) != dropout_seed(0, 5, 0, 1)
    assert dropout_seed(0, 5, 0, 0) != dropout_seed(0, 6, 0, 0) != dropout_seed(1, 5, 0, 0)
    assert dropout_seed(0, 5, 0, 1) == dropout_seed(0, 5, 0, 1)


def test_a_store_without_validation_rows_is_refused_naming_the_splits(tiny_cfg, tmp_path):
    """Without a validation split every validation would score nothing and report 0.0 bits."""
    cfg = tiny_cfg("data.splits={train: 1.0, val: 0.0, test: 0.0}")
    with pytest.raises(ConfigError, match=r"^data\.splits=.*the validation split of .* holds 0 rows") as error:
        train(cfg, tmp_path)
    assert "\n" not in str(error.value) and not (tmp_path / "checkpoints").exists()
