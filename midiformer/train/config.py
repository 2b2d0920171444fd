"""Refuse a bad configuration before any work: one line naming the option and what is allowed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from midiformer.common import (
    ConfigError,
    check_values,
    is_number,
    nonnegative,
    nonnegative_int,
    positive,
    positive_int,
)
from midiformer.data.augment import AUGMENTS
from midiformer.data.sources import DATA_SOURCES
from midiformer.data.store import codec_settings_of
from midiformer.model import LIKELIHOODS, validate_model_config
from midiformer.train.distributed import check_batch_split
from midiformer.train.optim import check_optimizer
from midiformer.train.precision import PRECISIONS
from midiformer.train.swa import SWAS
from midiformer.train.throughput import parse_max_time

RESUME_CHOICES = ("auto", "never")
DEVICES = ("auto", "cpu", "cuda")
NONFINITE_POLICIES = ("stop", "skip")


CHECKS: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", nonnegative_int, "a non-negative integer"),
    ("data.seq_len", positive_int, "a positive integer"),
    ("data.batch_size", positive_int, "a positive integer"),
    ("data.eval_batch_size", positive_int, "a positive integer"),
    ("optim.lr", positive, "a number > 0"),
    ("optim.weight_decay", nonnegative, "a number >= 0"),
    ("optim.warmup_steps", nonnegative_int, "an integer >= 0"),
    ("optim.min_lr_ratio", lambda v: is_number(v) and 0 <= v <= 1, "in [0, 1]"),
    ("optim.grad_clip", nonnegative, "a number >= 0 (0 = off)"),
    ("optim.grad_accum_steps", positive_int, "a positive integer"),
    ("trainer.max_steps", positive_int, "a positive integer"),
    ("trainer.val_every", nonnegative_int, "an integer >= 0 (0 = only at the end)"),
    ("trainer.ckpt_every", nonnegative_int, "an integer >= 0 (0 = only at the end)"),
    ("trainer.log_every", positive_int, "a positive integer"),
    ("trainer.sample_every", nonnegative_int, "an integer >= 0 (0 = off)"),
    ("trainer.sample_events", positive_int, "a positive integer"),
    ("trainer.sample_primer_events", positive_int, "a positive integer"),
    ("trainer.prefetch", nonnegative_int, "an integer >= 0 (0 = build batches on the loop's thread)"),
    ("trainer.peak_flops", lambda v: v is None or (is_number(v) and v > 0), "null or a number of FLOP/s > 0"),
    ("trainer.val_batches", lambda v: v is None or positive_int(v), "null or a positive integer"),
    ("trainer.device", lambda v: v in DEVICES, f"one of: {', '.join(DEVICES)}"),
    ("trainer.nonfinite_loss", lambda v: v in NONFINITE_POLICIES, f"one of: {', '.join(NONFINITE_POLICIES)}"),
    ("trainer.resume", lambda v: isinstance(v, str) and v != "", f"{' | '.join(RESUME_CHOICES)} | a checkpoint path"),
    ("trainer.init_from", lambda v: v is None or (isinstance(v, str) and v != ""), "null or a checkpoint path"),
    ("logger.wandb.mode", lambda v: v in ("disabled", "offline", "online"), "one of: disabled, offline, online"),
]


def validate_config(cfg: DictConfig) -> None:
    """Everything train.py reads, checked up front. Raises ConfigError."""
    check_values(cfg, CHECKS)
    parse_max_time(cfg.trainer.max_time)
    codec_settings_of(cfg.data)
    validate_model_config(cfg.model)
    if cfg.data.seq_len > cfg.model.max_seq_len:
        raise ConfigError(f"data.seq_len={cfg.data.seq_len} must be <= model.max_seq_len={cfg.model.max_seq_len}")
    check_batch_split(cfg, world_size=1)  # train() checks again once it knows the world size
    check_optimizer(cfg.optim)
    if cfg.trainer.init_from and not Path(cfg.trainer.init_from).is_file():
        raise ConfigError(f"trainer.init_from={cfg.trainer.init_from}: no such checkpoint file")
    for registry, node in ((PRECISIONS, cfg.trainer.precision), (SWAS, cfg.optim.swa), (AUGMENTS, cfg.data.augment),
                           (DATA_SOURCES, cfg.data)):
        registry.get(node.name)
    LIKELIHOODS.get(cfg.model.likelihood)
