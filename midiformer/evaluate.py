"""python -m midiformer.evaluate checkpoint=PATH split=test — bits per event of a trained model.

    python -m midiformer.evaluate checkpoint=RUN/checkpoints/best.pt split=test
    python -m midiformer.evaluate checkpoint=RUN/checkpoints/best.pt split=all data=midi_dir data.root=DIR

Prints and writes (JSON) bits per event in total and per field, bits per note and bits per second
of music, beside the unigram baseline. split=all scores every file of the data's folder (prepared
as one split of its own). The baseline codes each field with its frequencies on the training split
of the checkpoint's run (the counts travel in the checkpoint): what the model had to learn from,
never the evaluated folder's own statistics.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from midiformer.codec import events
from midiformer.common import CONF_DIR, ConfigError, exit_on_user_error, pick_device
from midiformer.data.dataset import eval_batches
from midiformer.data.store import Store, prepare_store
from midiformer.model.loss import LIKELIHOODS
from midiformer.train.checkpoint import model_from_checkpoint
from midiformer.train.metrics import bits_report, evaluate_model, unigram_report
from midiformer.train.precision import PRECISIONS

log = logging.getLogger("midiformer.evaluate")

WHOLE_FOLDER = "all"  # split=all: every file of the folder, one split covering it


def evaluate(cfg: DictConfig) -> dict:
    device = pick_device(cfg.device)
    model, run_cfg = model_from_checkpoint(cfg.checkpoint, device, averaged=cfg.averaged)
    data_cfg = cfg.data if cfg.get("data") is not None else run_cfg.data
    if cfg.split == WHOLE_FOLDER:
        data_cfg = OmegaConf.merge(data_cfg)  # a copy: the folder is prepared as one split of every file
        data_cfg.splits = {WHOLE_FOLDER: 1.0}
    store = Store(prepare_store(data_cfg))
    if cfg.split not in store.manifest["splits"]:
        raise ConfigError(f"split={cfg.split!r} is unknown; choose one of: {', '.join(store.manifest['splits'])} "
                          f"or {WHOLE_FOLDER} (every file of the folder)")
    split_events = store.events(cfg.split)
    if len(split_events) < 2:
        raise ConfigError(f"split={cfg.split}: the store {store.path} has no events in it")
    seq_len = min(int(run_cfg.data.seq_len), int(run_cfg.model.max_seq_len))
    # the run's own precision unless told: an fp32 run scored in bf16 would not match its validation
    precision_cfg = {"name": cfg.precision} if cfg.get("precision") else run_cfg.trainer.precision
    precision = PRECISIONS.build(precision_cfg, device_type=device.type)
    started = time.perf_counter()
    batches = eval_batches(split_events, cfg.batch_size, seq_len, offsets=store.offsets(cfg.split))
    likelihood = LIKELIHOODS.build(run_cfg.model.get("likelihood", "free"))  # runs from before it existed: free
    nats, n_events, n_notes = evaluate_model(model, batches, device=device, precision=precision,
                                             likelihood=likelihood)
    wall_time = time.perf_counter() - started
    seconds = store.manifest["splits"][cfg.split]["seconds"]
    targets, target_events, target_notes = store.target_counts(cfg.split)
    assert (target_events, target_notes) == (n_events, n_notes), "evaluation and store disagree on the targets"
    report = {
        "checkpoint": str(Path(cfg.checkpoint).resolve()), "split": cfg.split, "store": str(store.path),
        "events": n_events, "notes": n_notes, "seconds": seconds, "averaged": bool(cfg.averaged),
        "wall_time_s": wall_time, "events_per_s": n_events / wall_time if wall_time > 0 else None,
        "precision": precision.name,
        "model": bits_report(nats, n_events, n_notes, seconds),
        "unigram": unigram_report(training_counts(cfg.checkpoint, run_cfg), targets, n_events, n_notes, seconds),
    }
    output = Path(cfg.output) if cfg.output else Path(cfg.checkpoint).resolve().parents[1] / f"eval_{cfg.split}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"written to {output}")
    return report


def training_counts(checkpoint: str | Path, run_cfg: DictConfig) -> dict[str, np.ndarray]:
    """The field counts of the checkpoint's training split: stored in the checkpoint (read through a
    memory map: the weights are not loaded again), or, for checkpoints saved before they were, from
    the run's own store (prepared again if it is gone)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    counts = state.get("train_field_counts")
    if counts is not None:
        return {field: counts[field].numpy() for field in events.FIELDS}
    log.info("%s holds no training field counts (saved before they were kept); reading the run's store", checkpoint)
    return Store(prepare_store(run_cfg.data)).field_counts("train")


def format_report(report: dict) -> str:
    model, unigram = report["model"], report["unigram"]
    lines = [f"{report['split']} split: {report['events']:,} events, {report['notes']:,} notes, "
             f"{report['seconds'] / 60:.1f} min of music, scored at {report['events_per_s'] or 0:,.0f} events/s",
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
