"""Tiny training runs on real MIDI files: the OpenMSX songs of the dev corpus, prepared once."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_DIR, DEV_DATA

CORPUS = DEV_DATA / "openmsx"

TINY = ["model=tiny", "data=midi_dir", f"data.root={CORPUS}", "data.seq_len=64", "data.batch_size=8",
        "data.eval_batch_size=8", "data.num_workers=1", "logger.progress=false", "logger.tensorboard=false",
        "trainer.max_steps=6", "trainer.val_every=3", "trainer.ckpt_every=3", "trainer.log_every=1",
        "trainer.num_threads=1"]


def compose_config(*overrides: str, config_name: str = "config"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory, dev_data) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny_cfg(cache_dir):
    def make(*overrides: str):
        return compose_config(*TINY, f"data.cache_dir={cache_dir}", *overrides)

    return make


def tiny_command(run_dir: Path, cache_dir: Path, *overrides: str) -> list[str]:
    """The same tiny run as a command line (for runs killed and resumed in a subprocess)."""
    import sys

    return [sys.executable, "-m", "midiformer.train", *TINY, f"data.cache_dir={cache_dir}",
            f"hydra.run.dir={run_dir}", *overrides]
