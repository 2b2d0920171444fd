"""python -m midiformer.evaluate on a trained tiny model: bits per event beside the unigram baseline."""
from __future__ import annotations

import json

import pytest

from midiformer.evaluate import evaluate
from midiformer.train.loop import train
from midiformer.train.metrics import read_metrics
from tests.train.conftest import compose_config


def test_evaluate_reports_the_model_and_the_unigram_baseline(tiny_cfg, cache_dir, tmp_path):
    train(tiny_cfg("trainer.max_steps=60", "trainer.val_every=60", "optim.lr=3e-3", "optim.warmup_steps=10"), tmp_path)
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    cfg = compose_config(f"checkpoint={checkpoint}", "split=val", "device=cpu", config_name="evaluate")
    report = evaluate(cfg)
    assert json.loads((tmp_path / "eval_val.json").read_text()) == report
    fields = ("type", "time", "channel", "instrument", "note", "velocity")
    for name in ("model", "unigram"):
        part = report[name]
        assert part["bits_per_event"] == pytest.approx(sum(part[f"bits_per_event/{f}"] for f in fields))
        assert part["bits_per_note"] > part["bits_per_event"] and part["bits_per_second"] > 0
    # the same split and weights as the trainer's last validation: the same figure
    last_val = [m for m in read_metrics(tmp_path) if "val/bits_per_event" in m][-1]
    assert report["model"]["bits_per_event"] == pytest.approx(last_val["val/bits_per_event"], rel=1e-6)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert report["unigram"]["bits_per_event"] == pytest.approx(
        summary["unigram_baseline"]["unigram/val/bits_per_event"])
