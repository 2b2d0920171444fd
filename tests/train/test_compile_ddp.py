"""trainer.compile=true under DDP (torchrun, 2 processes, gloo on CPU): DDP is wrapped first and
compiled second, and the run trains like one uncompiled process (to compile's float tolerance)."""
from __future__ import annotations

import json

import pytest

from midiformer.train.loop import train
from midiformer.train.metrics import read_metrics
from tests.scaleout.conftest import MULTI, run, torchrun_command
from tests.train.conftest import compose_config

STEPS = ["trainer.max_steps=4", "trainer.val_every=4", "trainer.ckpt_every=4", "trainer.log_every=1"]


@pytest.mark.slow
def test_compiled_ddp_run_trains_like_one_uncompiled_process(cache_dir, tmp_path):
    train(compose_config(*MULTI, *STEPS, f"data.cache_dir={cache_dir}"), tmp_path / "one")
    run(torchrun_command(tmp_path / "ddp", cache_dir, 2, *STEPS, "trainer.compile=true"), timeout=900)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["world_size"]) == ("finished", 4, 2)
    ours, reference = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [m["step"] for m in ours] == [m["step"] for m in reference]
    for a, b in zip(ours, reference):
        for key in ("train/loss", "val/bits_per_event"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-3), (a["step"], key)
