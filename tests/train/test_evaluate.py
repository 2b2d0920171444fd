"""python -m midiformer.evaluate on a trained tiny model: bits per event beside the unigram baseline."""
from __future__ import annotations

import json

import pytest

from midiformer.codec import events
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
    for name in ("model", "unigram"):
        part = report[name]
        assert part["bits_per_event"] == pytest.approx(sum(part[f"bits_per_event/{f}"] for f in events.FIELDS))
        assert part["bits_per_note"] > part["bits_per_event"] and part["bits_per_second"] > 0
    # the same split and weights as the trainer's last validation: the same figure
    last_val = [m for m in read_metrics(tmp_path) if "val/bits_per_event" in m][-1]
    assert report["model"]["bits_per_event"] == pytest.approx(last_val["val/bits_per_event"], rel=1e-6)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert report["unigram"]["bits_per_event"] == pytest.approx(
        summary["unigram_baseline"]["unigram/val/bits_per_event"])


def trained_tiny(tiny_cfg, run_dir):
    train(tiny_cfg("trainer.max_steps=20", "trainer.val_every=20", "optim.lr=3e-3", "optim.warmup_steps=5"), run_dir)
    return run_dir / "checkpoints" / "last.pt"


def held_out_folder(folder):
    """Ten real files the tiny model never saw (groove drums and POP909, not OpenMSX), two levels deep."""
    from tests.conftest import dev_files
    from tests.data.conftest import copy_corpus

    picked = [f for f in dev_files() if f.parent.name == "groove"][:6] + [
        f for f in dev_files() if f.parent.name == "pop909"][:4]
    return copy_corpus(picked, folder), picked


def test_split_all_scores_every_file_with_the_training_baseline(tiny_cfg, tmp_path):
    import numpy as np

    from midiformer.codec import events
    from midiformer.data.store import Store
    from tests.train.test_metrics import direct_unigram_bits

    checkpoint = trained_tiny(tiny_cfg, tmp_path / "run")
    folder, files = held_out_folder(tmp_path / "held_out")
    cfg = compose_config(f"checkpoint={checkpoint}", "split=all", "data=midi_dir", f"data.root={folder}",
                         f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=1", "device=cpu",
                         f"output={tmp_path / 'all.json'}", config_name="evaluate")
    report = evaluate(cfg)
    songs = [events.encode(f, ticks_per_beat=96) for f in files]
    assert report["events"] == sum(len(s) for s in songs) - 1  # every row of every file but the first is a target
    assert report["notes"] == sum(events.count_notes(s) for s in songs)
    # the baseline: frequencies of the checkpoint's own training split, coded over the folder's rows
    train_store = Store(json.loads((tmp_path / "run" / "summary.json").read_text())["store"])
    folder_rows = np.asarray(Store(report["store"]).events("all"))
    expected = direct_unigram_bits(np.asarray(train_store.events("train")), folder_rows)
    assert report["unigram"]["bits_per_event"] == pytest.approx(sum(expected.values()) / report["events"], rel=1e-9)
    own = direct_unigram_bits(folder_rows, folder_rows)  # what the folder's own statistics would have given
    assert abs(sum(own.values()) - sum(expected.values())) > 0.05 * sum(expected.values())
    assert report["model"]["bits_per_event"] > 0 and report["events_per_s"] > 0


def test_a_checkpoint_without_field_counts_takes_them_from_its_runs_store(tiny_cfg, tmp_path):
    import torch

    checkpoint = trained_tiny(tiny_cfg, tmp_path / "run")

    def evaluate_val(path, output):
        return evaluate(compose_config(f"checkpoint={path}", "split=val", "device=cpu", f"output={output}",
                                       config_name="evaluate"))

    with_counts = evaluate_val(checkpoint, tmp_path / "a.json")
    state = torch.load(checkpoint, weights_only=True)
    del state["train_field_counts"]  # as saved before the counts were kept
    older = tmp_path / "run" / "checkpoints" / "older.pt"
    torch.save(state, older)
    without = evaluate_val(older, tmp_path / "b.json")
    assert without["unigram"] == with_counts["unigram"] and without["model"] == with_counts["model"]


def test_an_unknown_split_is_one_line_naming_it(tiny_cfg, tmp_path):
    from midiformer.common import ConfigError

    checkpoint = trained_tiny(tiny_cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="split='dev' is unknown.*all") as error:
        evaluate(compose_config(f"checkpoint={checkpoint}", "split=dev", "device=cpu", config_name="evaluate"))
    assert "\n" not in str(error.value)
