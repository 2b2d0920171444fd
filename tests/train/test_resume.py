"""Resume compares the run's config with the checkpoint's; init_from starts a new run from another's
weights; evaluate scores with the run's own precision. Tiny runs on real MIDI files."""
from __future__ import annotations

import json

import pytest
import torch

from midiformer.common import CheckpointError, ConfigError
from midiformer.evaluate import evaluate
from midiformer.train import distributed
from midiformer.train.checkpoint import COMPONENTS, COUNTERS, config_changes, trainer_state
from midiformer.train.config import validate_config
from midiformer.train.loop import Trainer, train
from midiformer.train.metrics import read_metrics
from tests.train.conftest import compose_config


def _trainer(cfg, run_dir):
    validate_config(cfg)
    return Trainer(cfg, run_dir, distributed.DistEnv(), torch.device("cpu"))


def test_a_changed_config_is_refused_in_one_line_naming_the_keys(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer.max_steps=3"), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    before = last.read_bytes()
    with pytest.raises(CheckpointError) as error:
        train(tiny_cfg("trainer.max_steps=6", "optim.lr=5e-4", "model/pos=rope"), tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{last}: cannot resume, the config changed in ")
    assert "model.pos.name ('rope_time' -> 'rope')" in message and "optim.lr (0.001 -> 0.0005)" in message
    assert "trainer.max_steps" not in message.split("; ")[0]  # allowed to change: not among the changed keys
    assert last.read_bytes() == before  # nothing lost


def test_allowed_changes_resume_and_go_on(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer.max_steps=3"), tmp_path)
    train(tiny_cfg("trainer.max_steps=6", "trainer.log_every=2", "trainer.val_every=6", "data.num_workers=2"),
          tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["status"] == "finished"
    assert [m["step"] for m in read_metrics(tmp_path) if "train/loss" in m] == [1, 2, 3, 4, 6]


def test_save_and_load_share_one_description(tiny_cfg, tmp_path):
    trainer = _trainer(tiny_cfg(), tmp_path)
    state = trainer_state(trainer)
    assert set(state) == {*COMPONENTS, *COUNTERS, "rng", "config"}


def test_init_from_starts_a_new_run_from_the_weights(tiny_cfg, tmp_path):
    train(tiny_cfg(), tmp_path / "pretrained")
    source = tmp_path / "pretrained" / "checkpoints" / "last.pt"
    weights = torch.load(source, weights_only=True)["model"]
    trainer = _trainer(tiny_cfg(f"trainer.init_from={source}", "model.dropout=0.0", "optim.lr=1e-4"),
                       tmp_path / "finetune")
    assert trainer.step == 0 and not trainer.optimizer.state  # a new run: step 0, fresh optimizer
    for name, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(tensor, weights[name], rtol=0, atol=0)
    fresh = _trainer(tiny_cfg(), tmp_path / "fresh")
    assert not torch.equal(fresh.model.embed[0].weight, trainer.model.embed[0].weight)


def test_init_from_a_different_architecture_is_refused_naming_the_keys(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer.max_steps=3"), tmp_path / "pretrained")
    source = tmp_path / "pretrained" / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=r"trainer.init_from=.*differs in model.d_model \(32 -> 64\)"):
        _trainer(tiny_cfg(f"trainer.init_from={source}", "model.d_model=64"), tmp_path / "wider")
    with pytest.raises(ConfigError, match="trainer.init_from=.*missing.pt: no such checkpoint file"):
        validate_config(tiny_cfg(f"trainer.init_from={tmp_path / 'missing.pt'}"))


def test_a_name_only_node_equals_the_bare_name():
    assert config_changes({"model": {"pos": "learned"}}, {"model": {"pos": {"name": "learned"}}}) == []
    assert config_changes({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 0}) == ["b.c", "d"]


def test_evaluate_uses_the_runs_precision_unless_told(tiny_cfg, tmp_path):
    train(tiny_cfg("trainer/precision=bf16-mixed", "trainer.max_steps=3", "trainer.val_every=3"), tmp_path)
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    last_val = [m for m in read_metrics(tmp_path) if "val/bits_per_event" in m][-1]["val/bits_per_event"]
    common = [f"checkpoint={checkpoint}", "split=val", "device=cpu"]
    as_trained = evaluate(compose_config(*common, config_name="evaluate"))
    assert as_trained["precision"] == "bf16-mixed"
    assert as_trained["model"]["bits_per_event"] == pytest.approx(last_val, rel=1e-6)
    in_fp32 = evaluate(compose_config(*common, "precision=fp32", f"output={tmp_path / 'fp32.json'}",
                                      config_name="evaluate"))
    assert in_fp32["precision"] == "fp32"
    assert in_fp32["model"]["bits_per_event"] != as_trained["model"]["bits_per_event"]
    assert in_fp32["model"]["bits_per_event"] == pytest.approx(last_val, rel=2e-2)  # close, not equal
