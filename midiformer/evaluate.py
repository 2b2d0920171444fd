"""python -m midiformer.evaluate checkpoint=PATH split=test — bits per event of a trained model.

Prints and writes (JSON) bits per event in total and per field, bits per note and bits per second
of music, beside the unigram baseline (field frequencies of the same store's training split).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from midiformer.common import CONF_DIR, ConfigError, exit_on_user_error, pick_device
from midiformer.data.dataset import eval_batches
from midiformer.data.store import Store, prepare_store
from midiformer.model.loss import LIKELIHOODS
from midiformer.train.checkpoint import model_from_checkpoint
from midiformer.train.metrics import bits_report, evaluate_model, unigram_report
from midiformer.train.precision import PRECISIONS

log = logging.getLogger("midiformer.evaluate")


def evaluate(cfg: DictConfig) -> dict:
    device = pick_device(cfg.device)
    model, run_cfg = model_from_checkpoint(cfg.checkpoint, device, averaged=cfg.averaged)
    data_cfg = cfg.data if cfg.get("data") is not None else run_cfg.data
    store = Store(prepare_store(data_cfg))
    if cfg.split not in store.manifest["splits"]:
        raise ConfigError(f"split={cfg.split!r} is unknown; choose one of: {', '.join(store.manifest['splits'])}")
    split_events = store.events(cfg.split)
    if len(split_events) < 2:
        raise ConfigError(f"split={cfg.split}: the store {store.path} has no events in it")
    seq_len = min(int(run_cfg.data.seq_len), int(run_cfg.model.max_seq_len))
    precision = PRECISIONS.build({"name": "auto"}, device_type=device.type)
    batches = eval_batches(split_events, cfg.batch_size, seq_len, offsets=store.offsets(cfg.split))
    likelihood = LIKELIHOODS.build(run_cfg.model.get("likelihood", "free"))  # runs from before it existed: free
    nats, n_events, n_notes = evaluate_model(model, batches, device=device, precision=precision,
                                             likelihood=likelihood)
    seconds = store.manifest["splits"][cfg.split]["seconds"]
    report = {
        "checkpoint": str(Path(cfg.checkpoint).resolve()), "split": cfg.split, "store": str(store.path),
        "events": n_events, "notes": n_notes, "seconds": seconds, "averaged": bool(cfg.averaged),
        "model": bits_report(nats, n_events, n_notes, seconds),
        "unigram": unigram_report(store.events("train"), split_events, seconds),
    }
    output = Path(cfg.output) if cfg.output else Path(cfg.checkpoint).resolve().parents[1] / f"eval_{cfg.split}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"written to {output}")
    return report


def format_report(report: dict) -> str:
    model, unigram = report["model"], report["unigram"]
    lines = [f"{report['split']} split: {report['events']:,} events, {report['notes']:,} notes, "
             f"{report['seconds'] / 60:.1f} min of music",
             f"{'':28}{'model':>10}{'unigram':>10}"]
    for key in model:
        lines.append(f"{key:28}{model[key]:10.4f}{unigram.get(key, float('nan')):10.4f}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    torch.set_grad_enabled(False)
    exit_on_user_error(evaluate, cfg)


if __name__ == "__main__":
    main()
