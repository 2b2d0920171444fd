"""summary.json: the last word of a run, which report, hpo and the paper table read.

Speed figures are of this session's training steps (validation and checkpoints left out; a resumed
run: since it resumed); wall_time_s is the whole training time across resumes (trainer.max_time's clock).
startup_s is the time from the process start to the end of the first step: what a cluster job waits.
"""
from __future__ import annotations

import json
import math

from midiformer import provenance
from midiformer.train.metrics import read_metrics
from midiformer.train.throughput import Throughput, parse_max_time, process_started_at


def write_summary(trainer, status: str, last_val: dict, baseline: dict, meter: Throughput,
                  first_step_at: float | None) -> None:
    """summary.json of the run folder (rank 0): what tools read instead of the trainer."""
    metrics = read_metrics(trainer.run_dir)  # none yet when a signal stops the run before its first log line
    train_losses = [m["train/loss"] for m in metrics if "train/loss" in m]
    swa_values = [m["val/swa/bits_per_event"] for m in metrics if "val/swa/bits_per_event" in m]
    speed = meter.totals()  # of this session's steps (a resumed run: since it resumed)
    started_at = process_started_at()
    summary = {
        "status": status, "steps": trainer.step, "max_steps": trainer.cfg.trainer.max_steps,
        "final_val_bits_per_event": last_val.get("val/bits_per_event"),
        "best_val_bits_per_event": trainer.best_val if math.isfinite(trainer.best_val) else None,
        "final_swa_val_bits_per_event": last_val.get("val/swa/bits_per_event"),
        "best_swa_val_bits_per_event": min(swa_values) if swa_values else None,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "final_val": last_val, "unigram_baseline": baseline,
        "wall_time_s": trainer.elapsed, "max_time_s": parse_max_time(trainer.cfg.trainer.get("max_time")),
        "events_per_s": speed.get("events_per_s"), "mfu": speed.get("mfu"),
        "data_wait_fraction": speed.get("data_wait_fraction"), "peak_flops": meter.peak,
        "flops_per_event": meter.flops_per_event, "first_step_at": first_step_at,
        "startup_s": first_step_at - started_at if first_step_at and started_at else None,
        "skipped_steps": trainer.skipped_steps, "params": trainer.model.num_params(),
        "seed": trainer.cfg.seed, "git_commit": trainer.git_commit, "versions": provenance.library_versions(),
        "machine": provenance.machine(), "world_size": trainer.env.world_size, "device": str(trainer.device),
        "store": str(trainer.store.path),
    }
    (trainer.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
