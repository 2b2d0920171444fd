"""A tiny model trained for a few dozen steps on the OpenMSX songs of the dev corpus, once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from midiformer.train.checkpoint import model_from_checkpoint
from midiformer.train.loop import train
from tests.model.conftest import songs  # noqa: F401  (a fixture, shared with the model tests)
from tests.train.conftest import CORPUS, TINY, compose_config

PRIMER_SONG = "coconut_run2.mid"  # 68 s, channels 0 2 4 6 9, one tempo, programs set at the start
CONTEXT = 128  # model.max_seq_len of the trained tiny model: a primer of about 2 s fits


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, dev_data) -> Path:
    run_dir = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_config(*TINY, f"data.cache_dir={run_dir / 'cache'}", f"model.max_seq_len={CONTEXT}",
                         "data.seq_len=96", "trainer.max_steps=40", "trainer.val_every=40", "trainer.ckpt_every=40",
                         "trainer.val_batches=2", "optim.lr=3e-3", "optim.warmup_steps=5")
    train(cfg, run_dir)
    return run_dir / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def trained_model(trained_checkpoint):
    return model_from_checkpoint(trained_checkpoint)[0]


@pytest.fixture(scope="session")
def primer_song(dev_data) -> Path:
    return CORPUS / PRIMER_SONG


def generate_cfg(checkpoint: Path, out_dir: Path, *overrides: str):
    """conf/generate.yaml composed as the command line would (primer=FILE written as primer.file=FILE)."""
    return compose_config(f"checkpoint={checkpoint}", f"out_dir={out_dir}", "progress=false", *overrides,
                          config_name="generate")
