"""Sweeps, searches, reports and the paper table on the trainer's tiny runs (real OpenMSX files)."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO
from tests.train.conftest import TINY, cache_dir, compose_config  # noqa: F401 - cache_dir is a fixture


def tiny_overrides(cache: str, *more: str) -> list[str]:
    return [*TINY, f"data.cache_dir={cache}", *more]


# A search space small and fast enough for tests: two widths of the tiny model and a learning rate.
TINY_SPACE = ["~hpo.space.model.dropout", "~hpo.space.data.batch_size", "hpo.space.model.d_model.choices=[16,32]",
              "hpo.space.optim.lr.low=1e-4", "hpo.space.optim.lr.high=3e-3"]


def hpo_config(cache: str, *more: str):
    return compose_config(*tiny_overrides(cache, *TINY_SPACE, *more), config_name="hpo")


def run_module(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
