"""Run folders, read back: what report, hpo and the paper table know about a finished (or stopped) run.

A run folder (see midiformer/train.py) holds config.yaml (the resolved config), metrics.jsonl,
summary.json once the run ended, and .hydra/overrides.yaml when Hydra launched it. Tools read these
files, never the trainer's insides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from midiformer.train.metrics import read_metrics

# The numbers a report shows for a run: summary.json's key, and how to get it from metrics.jsonl when
# the run has no summary (it was killed).
SUMMARY_KEYS = ("best_val_bits_per_event", "final_train_loss", "steps", "events_per_s", "wall_time_s")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"norm": {"name": "x"}}} -> {"model.norm.name": "x"}; lists become JSON text (hashable)."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else node}


@dataclass
class Run:
    path: Path
    settings: dict[str, Any]       # config.yaml, flattened: {"model.norm.name": "scalenorm", ...}
    summary: dict[str, Any]        # summary.json; {} when the run never wrote one
    metrics: list[dict[str, Any]]  # metrics.jsonl, one dict per line
    overrides: list[str] | None    # .hydra/overrides.yaml (the command line), when Hydra launched it

    @property
    def seed(self) -> Any:
        return self.settings.get("seed")

    @property
    def status(self) -> str:
        return self.summary.get("status", "unfinished")

    def curve(self, key: str = "val/bits_per_event") -> tuple[list[int], list[float]]:
        points = [(m["step"], m[key]) for m in self.metrics if key in m]
        return [s for s, _ in points], [v for _, v in points]

    def number(self, key: str) -> float | None:
        """A summary number; from metrics.jsonl when the run has no summary.json."""
        if self.summary.get(key) is not None:
            return float(self.summary[key])
        _, val = self.curve()
        _, train_loss = self.curve("train/loss")
        steps, speeds = self.curve("events_per_s")
        derived = {"best_val_bits_per_event": min(val, default=None),
                   "final_train_loss": train_loss[-1] if train_loss else None,
                   "steps": steps[-1] if steps else None,
                   "events_per_s": sum(speeds) / len(speeds) if speeds else None}
        return derived.get(key)


def read_run(path: str | Path) -> Run:
    path = Path(path)
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a run folder: it has no config.yaml")
    summary_file, overrides_file = path / "summary.json", path / ".hydra" / "overrides.yaml"
    return Run(path=path, settings=flatten(yaml.safe_load(config_file.read_text()) or {}),
               summary=json.loads(summary_file.read_text()) if summary_file.is_file() else {},
               metrics=read_metrics(path),
               overrides=yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else None)


def find_runs(path: str | Path) -> list[Path]:
    """Every run folder at or below `path` (a run folder, a multirun folder, a study folder), sorted."""
    path = Path(path)
    found = {config.parent for config in path.rglob("config.yaml")
             if ".hydra" not in config.relative_to(path).parts
             and ((config.parent / "metrics.jsonl").is_file() or (config.parent / "summary.json").is_file())}
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list:
    """multirun/x/2 before multirun/x/10."""
    return [int(part) if part.isdigit() else part for part in path.parts]
