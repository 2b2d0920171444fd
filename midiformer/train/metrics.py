"""Bits per event and friends, and the sinks that record them (jsonl, TensorBoard, W&B).

Bits per event = the masked cross-entropy summed over fields, in bits, averaged over every target
event of a split. Per note and per second divide the same total bits by the split's notes and its
duration in seconds (from its tempo map), so results compare across tokenizations.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from midiformer.codec import events
from midiformer.common import LN2


def bits_report(nats_per_field: dict[str, float], n_events: int, n_notes: int | None = None,
                seconds: float | None = None, prefix: str = "") -> dict[str, float]:
    """{prefix}bits_per_event, per field, per note and per second from summed nats over n_events targets."""
    total_bits = sum(nats_per_field.values()) / LN2
    report = {f"{prefix}bits_per_event": total_bits / max(n_events, 1)}
    report.update({f"{prefix}bits_per_event/{field}": nats / LN2 / max(n_events, 1)
                   for field, nats in nats_per_field.items()})
    if n_notes:
        report[f"{prefix}bits_per_note"] = total_bits / n_notes
    if seconds:
        report[f"{prefix}bits_per_second"] = total_bits / seconds
    return report


def unigram_nats(train_counts: Mapping[str, np.ndarray], target_counts: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The baseline: each field coded with its value frequencies on the training split (where the field
    applies, add-one smoothed), summed over the evaluation targets. Both sides are field counts
    (store.field_counts), so the cost does not depend on the size of either split. Nats per field."""
    nats = {}
    for field in events.FIELDS:
        counts = np.asarray(train_counts[field], dtype=np.float64) + 1.0
        log_p = np.log(counts / counts.sum())
        nats[field] = float(-(np.asarray(target_counts[field], dtype=np.float64) * log_p).sum())
    return nats


def unigram_report(train_counts: Mapping[str, np.ndarray], target_counts: Mapping[str, np.ndarray],
                   n_events: int, n_notes: int, seconds: float | None, prefix: str = "") -> dict[str, float]:
    """bits_report of the unigram baseline on a split's targets (Store.target_counts: every row but the
    first, as in evaluation)."""
    return bits_report(unigram_nats(train_counts, target_counts), n_events, n_notes, seconds, prefix=prefix)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, batches: Iterable, *, device: torch.device, precision,
                   likelihood, all_reduce=lambda tensor: tensor) -> tuple[dict[str, float], int, int]:
    """Summed nats per field, target events and target notes over `batches` (the dataset's Batch; all ranks
    together); `likelihood`: a LIKELIHOODS entry (the masks of the values the past allows, or None)."""
    from midiformer.model.loss import masked_field_losses

    was_training = model.training
    model.eval()
    totals = torch.zeros(len(events.FIELDS) + 2, dtype=torch.float64, device=device)
    for batch in batches:
        inputs, targets, start = batch.to(device)
        with precision.autocast():
            logits = model(inputs, targets, start.ticks, start.counts)
        masks = likelihood(inputs, targets, start)
        nats, n_events = masked_field_losses({k: v.float() for k, v in logits.items()}, targets, masks)
        totals[:-2] += torch.stack([nats[f].double() for f in events.FIELDS])
        totals[-2] += n_events.double()
        totals[-1] += (targets[..., 0] == events.NOTE_ON).sum()
    totals = all_reduce(totals)
    model.train(was_training)
    nats_per_field = dict(zip(events.FIELDS, totals[:-2].tolist()))
    return nats_per_field, int(totals[-2].item()), int(totals[-1].item())


class MetricSinks:
    """Where metrics go: metrics.jsonl always; TensorBoard and W&B as configured. Rank 0 only."""

    def __init__(self, run_dir: Path, logger_cfg, config: dict[str, Any], resume_step: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        _truncate_after(self.path, resume_step)  # a resumed run rewrites what came after its checkpoint
        self.tensorboard = self.wandb = None
        if logger_cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir), purge_step=resume_step or None)
        if logger_cfg.wandb.mode != "disabled":
            import wandb

            self.wandb = wandb.init(mode=logger_cfg.wandb.mode, project=logger_cfg.wandb.project,
                                    entity=logger_cfg.wandb.entity, tags=list(logger_cfg.wandb.tags),
                                    dir=str(run_dir), config=config, resume="allow",
                                    id=_wandb_id(run_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tensorboard is not None:
            for key, value in metrics.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def log_media(self, step: int, tag: str, image_path: Path, audio_path: Path | None = None,
                  scalars: dict[str, float] | None = None) -> None:
        """A picture (PNG), an optional .wav and scalars about them, to TensorBoard and W&B (not metrics.jsonl)."""
        if self.tensorboard is not None:
            from matplotlib.image import imread

            self.tensorboard.add_image(f"{tag}/pianoroll", imread(image_path)[..., :3], step, dataformats="HWC")
            if audio_path is not None:
                samples, rate = _read_wav(audio_path)
                self.tensorboard.add_audio(f"{tag}/audio", torch.from_numpy(samples)[None], step, sample_rate=rate)
            for key, value in (scalars or {}).items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb is not None:
            import wandb

            media = {f"{tag}/pianoroll": wandb.Image(str(image_path)), **(scalars or {})}
            if audio_path is not None:
                media[f"{tag}/audio"] = wandb.Audio(str(audio_path))
            self.wandb.log(media, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM .wav as mono float32 in [-1, 1] and its sample rate."""
    import wave

    with wave.open(str(path)) as f:
        rate, channels = f.getframerate(), f.getnchannels()
        pcm = np.frombuffer(f.readframes(f.getnframes()), np.int16).astype(np.float32) / 32768.0
    return pcm.reshape(-1, channels).mean(axis=1), rate


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _truncate_after(path: Path, step: int) -> None:
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def _wandb_id(run_dir: Path) -> str:
    """One W&B run per run folder, so a resumed run continues its curves."""
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
