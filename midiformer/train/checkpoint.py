"""Checkpoints: what one holds (one description, for save and load), atomic writes, safe loads, the
config check on resume, and every random state needed to resume exactly.

A checkpoint holds only tensors and plain Python types, so `torch.load(path, weights_only=True)`
loads it: a downloaded checkpoint cannot run code.

    trainer_state(trainer)             the dict save_checkpoint writes
    restore_trainer_state(trainer, s)  resume: refuse a changed config, then load every part back
    init_weights_from(model, path, cfg)  trainer.init_from: a new run starting from another run's weights
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from midiformer.common import CheckpointError

FORMAT = "midiformer-checkpoint-1"

# What a checkpoint holds besides its format marker, the random states ("rng") and the run's resolved
# config ("config"): the trainer's attributes with a state_dict, and its plain counters.
COMPONENTS = ("model", "optimizer", "scheduler", "scaler", "swa")
COUNTERS = ("step", "best_val", "elapsed", "skipped_steps")

# Config keys a resumed run may change (an entry ending in ".*" covers everything under it): how long and
# how often, what is logged, where the cache is, how many threads or workers. Anything else would
# mix two runs in one folder; start a new folder instead (trainer.init_from=CKPT keeps the weights).
RESUME_MAY_CHANGE = (
    "trainer.max_steps", "trainer.max_time", "trainer.val_every", "trainer.ckpt_every", "trainer.log_every",
    "trainer.val_batches", "trainer.sample_every", "trainer.sample_events", "trainer.sample_primer_events",
    "trainer.resume", "trainer.init_from", "trainer.num_threads", "trainer.compile", "trainer.prefetch",
    "trainer.peak_flops", "trainer.nonfinite_loss", "logger.*", "data.cache_dir", "data.num_workers",
    "data.eval_batch_size",
)
# Model keys that do not change a parameter's name or shape: trainer.init_from may differ in them.
INIT_FROM_MAY_CHANGE = ("model.dropout", "model.init.*", "model.embedding_init")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over `path`:
    a crash at any moment leaves either the old checkpoint or the new one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and weights_only errors all mean: not a checkpoint of ours
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a midiformer checkpoint ({first_line[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a midiformer checkpoint (no '{FORMAT}' marker)")
    return state


# --- the trainer's state: one description for save and load --------------------------------------


def trainer_state(trainer: Any, **records: Any) -> dict[str, Any]:
    """Everything a resumed run needs, from a Trainer (its COMPONENTS and COUNTERS attributes, its cfg),
    plus `records` for the checkpoint's readers that resume does not read back (train_field_counts:
    the training split's field counts, evaluate's unigram baseline)."""
    return {**{name: getattr(trainer, name).state_dict() for name in COMPONENTS},
            **{name: getattr(trainer, name) for name in COUNTERS},
            "rng": capture_rng(), "config": OmegaConf.to_container(trainer.cfg, resolve=True), **records}


def restore_trainer_state(trainer: Any, state: dict[str, Any], path: str | Path) -> None:
    """Resume `trainer` from `state` (loaded from `path`); CheckpointError if the run's config changed."""
    missing = [key for key in (*COMPONENTS, *COUNTERS, "rng", "config") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    run_config = OmegaConf.to_container(trainer.cfg, resolve=True)
    changed = [key for key in config_changes(state["config"], run_config) if not _covered(key, RESUME_MAY_CHANGE)]
    if changed:
        raise CheckpointError(
            f"{path}: cannot resume, the config changed in {_describe(changed, state['config'], run_config)}; "
            f"use a new run folder (with trainer.init_from={path} to start from its weights) or "
            f"trainer.resume=never to start afresh here (may change on resume: {', '.join(RESUME_MAY_CHANGE)})")
    for name in COMPONENTS:
        getattr(trainer, name).load_state_dict(state[name])
    for name in COUNTERS:
        setattr(trainer, name, state[name])
    restore_rng(state["rng"])


def init_weights_from(model: torch.nn.Module, path: str | Path, model_cfg: Any,
                      map_location: str | torch.device = "cpu") -> None:
    """Load another run's trained weights into `model` (a new run: fresh optimizer, step 0).
    CheckpointError naming the keys if the architectures differ."""
    state = load_checkpoint(path, map_location=map_location)
    theirs = {"model": state.get("config", {}).get("model", {})}
    ours = {"model": OmegaConf.to_container(model_cfg, resolve=True)}
    changed = [key for key in config_changes(theirs, ours) if not _covered(key, INIT_FROM_MAY_CHANGE)]
    if changed:
        raise CheckpointError(f"trainer.init_from={path}: its model differs in {_describe(changed, theirs, ours)} "
                              f"(only {', '.join(INIT_FROM_MAY_CHANGE)} may differ)")
    model.load_state_dict(state["model"])


def config_changes(old: Any, new: Any) -> list[str]:
    """The dotted keys whose values differ between two config trees (a key on one side only counts).
    A node holding only a name equals that bare name: `{name: learned}` is `learned`."""
    old_leaves, new_leaves = _leaves(old), _leaves(new)
    return sorted(key for key in old_leaves.keys() | new_leaves.keys()
                  if old_leaves.get(key, _ABSENT) != new_leaves.get(key, _ABSENT))


_ABSENT = "<absent>"


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and set(tree) == {"name"}:
        tree = tree["name"]
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves.update(_leaves(value, f"{prefix}{key}."))
    return leaves


def _covered(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key == entry or (entry.endswith(".*") and key.startswith(entry[:-1])) for entry in allowed)


def _describe(keys: list[str], old: Any, new: Any, shown: int = 6) -> str:
    old_leaves, new_leaves = _leaves(old), _leaves(new)
    parts = [f"{key} ({old_leaves.get(key, _ABSENT)!r} -> {new_leaves.get(key, _ABSENT)!r})" for key in keys[:shown]]
    return ", ".join(parts) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


# --- random states as tensors and plain types -------------------------------------------------


def capture_rng() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "python": {"version": python_state[0], "state": list(python_state[1]), "gauss": python_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu", averaged: bool = False):
    """(MidiGPT in eval mode, the run's resolved config as a DictConfig) from a checkpoint file.
    averaged=True loads the SWA average instead of the trained weights (CheckpointError if none)."""
    from midiformer.model import MidiGPT

    state = load_checkpoint(path, map_location=device)
    cfg = OmegaConf.create(state["config"])
    model = MidiGPT(cfg.model).to(device)
    weights = state["model"]
    if averaged:
        swa_weights = state.get("swa", {}).get("model")
        if not swa_weights or int(swa_weights["n_averaged"]) == 0:
            raise CheckpointError(f"{path}: holds no SWA average (trained with optim/swa=off, or before its start)")
        weights = {k.removeprefix("module."): v for k, v in swa_weights.items() if k != "n_averaged"}
    model.load_state_dict(weights)
    return model.eval(), cfg
