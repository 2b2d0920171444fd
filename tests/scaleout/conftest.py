"""Runs on several processes of this machine (gloo on CPU): torchrun, and submitit's local executor.

On 2 CPU cores these runs are no faster than one process: the tests are of correctness only.
Dropout is off (model.dropout=0) wherever runs of different world sizes are compared: each rank seeds
its dropout from (seed, step, micro-batch, rank), so the masks of a global batch depend on the number
of ranks, and so would the losses.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from midiformer.train.loop import Trainer, train
from midiformer.train.metrics import read_metrics
from tests.conftest import CONF_DIR, REPO

# cache_dir (the session's prepared store) and tiny_cfg are fixtures, shared with tests/train
from tests.train.conftest import TINY, cache_dir, compose_config, tiny_cfg  # noqa: F401

# 30 steps at a learning rate that moves the loss (so that unsynchronised gradients would show), long
# enough to signal a run in the middle, short enough for 2 cores
MULTI = [*TINY, "model.dropout=0", "optim.lr=3e-3", "optim.warmup_steps=5", "trainer.max_steps=30",
         "trainer.val_every=10", "trainer.ckpt_every=10",
         "data.eval_batch_size=6"]  # 2 ranks x 3 windows: the validation split (40 windows) ends in padding
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def compose_with_hydra(*overrides: str):
    """The train config with its `hydra` node, as `python -m midiformer.train ... --cfg hydra` shows it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(run_dir: Path | str, cache: Path, nproc: int, *overrides: str) -> list[str]:
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={free_port()}"]
    return [*torchrun, "-m", "midiformer.train", *MULTI, f"data.cache_dir={cache}", f"hydra.run.dir={run_dir}",
            *overrides]


def local_launcher_command(sweep_dir: Path, cache: Path, tasks: int, *overrides: str) -> list[str]:
    """One job of `tasks` ranks through submitit's local executor; its run folder is sweep_dir/0."""
    return [sys.executable, "-m", "midiformer.train", "--multirun", "hydra/launcher=local",
            f"hydra.launcher.tasks_per_node={tasks}", f"hydra.sweep.dir={sweep_dir}", *MULTI,
            f"data.cache_dir={cache}", *overrides]


def run(command: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def signal_during_step(monkeypatch, step: int, signum: int = signal.SIGUSR2) -> None:
    """Make this process send itself `signum` as training step `step` (1-based) begins: a real signal,
    at a known point, with the step still to compute."""
    real_step = Trainer.train_step

    def signalled_step(trainer):
        if trainer.step == step - 1:
            os.kill(os.getpid(), signum)
        return real_step(trainer)

    monkeypatch.setattr(Trainer, "train_step", signalled_step)


def losses(run_dir: Path) -> list[tuple]:
    """(step, training loss, validation bits/event) of each metrics line: what a resumed run must repeat."""
    return [(m["step"], m.get("train/loss"), m.get("val/bits_per_event")) for m in read_metrics(run_dir)]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="session")
def one_process(tmp_path_factory, cache_dir):  # noqa: F811
    """The reference: MULTI in this process."""
    run_dir = tmp_path_factory.mktemp("one_process")
    train(compose_config(*MULTI, f"data.cache_dir={cache_dir}"), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def torchrun_two(tmp_path_factory, cache_dir):  # noqa: F811
    """MULTI on 2 torchrun processes. Each rank's Hydra is given its own folder (as `${now:...}` may give
    on a busy machine); the run must go to rank 0's: rank0/."""
    root = tmp_path_factory.mktemp("torchrun_two")
    run(torchrun_command(root / "rank${oc.env:RANK}", cache_dir, 2))
    return root


# --- a real SLURM cluster (../shared/tools/slurm/start; .ci/run starts it) -------------------------

# .ci/run sets it: there a missing or broken cluster fails the slurm tests instead of skipping them
REQUIRE_SLURM = os.environ.get("MIDIFORMER_REQUIRE_SLURM") == "1"


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The partition of a live cluster; skipped (with the reason) where there is none."""
    import shutil

    def missing(why: str):
        if REQUIRE_SLURM:
            pytest.fail(f"MIDIFORMER_REQUIRE_SLURM=1 but {why}", pytrace=False)
        pytest.skip(why)

    if shutil.which("sinfo") is None:
        missing("no SLURM here: sinfo is not on PATH (../shared/tools/slurm/start starts a local cluster)")
    done = subprocess.run(["sinfo", "-h", "-o", "%P %T %D"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or "idle" not in done.stdout and "mix" not in done.stdout:
        missing(f"sinfo finds no usable node: {(done.stdout + done.stderr).strip()[:300]}")
    return done.stdout.split()[0].rstrip("*")


class ReleaseRequeued:
    """While active, starts requeued jobs within seconds: SLURM holds a requeued job ~2 min (reason
    BeginTime), which would make each requeue test minutes long. Not at once: a job started in the second
    its old instance's credential was revoked on the node fails at launch ("Job credential revoked",
    slurmctld.log), which is why SLURM waits. Counts the releases."""

    DELAY_S = 10

    def __init__(self, poll_s: float = 1.0):
        import threading

        self.poll_s, self.released = poll_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        released_at: dict[str, float] = {}  # squeue shows no start time for a held job: remember our own
        while not self._stop.wait(self.poll_s):
            queue = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i|%r"], capture_output=True, text=True)
            for line in queue.stdout.splitlines():
                job_id, reason = line.split("|", 1)
                if reason.strip() == "BeginTime" and time.time() - released_at.get(job_id, 0.0) > 6 * self.DELAY_S:
                    subprocess.run(["scontrol", "update", f"jobid={job_id}", f"StartTime=now+{self.DELAY_S}"],
                                   capture_output=True)
                    released_at[job_id] = time.time()
                    self.released.append(job_id)

    def __enter__(self) -> "ReleaseRequeued":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def slurm_train_command(sweep_dir: Path, cache: Path, *overrides: str) -> list[str]:
    """One training job through hydra/launcher=slurm_cpu on the local cluster; its run folder is sweep_dir/0."""
    return [sys.executable, "-m", "midiformer.train", "--multirun", "hydra/launcher=slurm_cpu",
            f"hydra.sweep.dir={sweep_dir}", *MULTI, f"data.cache_dir={cache}", "trainer.num_threads=1", *overrides]


def job_ids(sweep_dir: Path) -> list[str]:
    """The job ids submitit used under sweep_dir (.submitit/<id>/ or workers/<id>/)."""
    return sorted(p.name for folder in (sweep_dir / ".submitit", sweep_dir / "workers") if folder.is_dir()
                  for p in folder.iterdir() if p.is_dir())


def sacct_states(job_id: str) -> list[str]:
    """Every state the job went through, requeues included (-D: duplicates)."""
    done = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                          text=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
