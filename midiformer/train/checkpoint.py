"""Checkpoints: atomic writes, safe loads, and every random state needed to resume exactly.

A checkpoint holds only tensors and plain Python types, so `torch.load(path, weights_only=True)`
loads it: a downloaded checkpoint cannot run code.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midiformer.common import CheckpointError

FORMAT = "midiformer-checkpoint-1"


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
    from omegaconf import OmegaConf

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
