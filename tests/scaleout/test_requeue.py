"""Preemption under submitit's local executor: SIGUSR2 to one task of a 2-task job; the ranks agree to
stop after the step, rank 0 writes last.pt and hands over to submitit's handler, which requeues the job
(the executor restarts it, as `scontrol requeue` would on SLURM); the restarted job resumes from last.pt
in the same run folder and ends exactly where an uninterrupted 2-rank run does."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from midiformer.train.metrics import read_metrics
from tests.conftest import REPO
from tests.scaleout.conftest import ENV, local_launcher_command, losses, weights

pytestmark = pytest.mark.slow  # subprocesses: torchrun, submitit's local executor

def task_pid(sweep_dir: Path, rank: int) -> int | None:
    """The process of task `rank` of the job in sweep_dir (submitit.core._submit, started by the executor)."""
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes()
            environment = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # not a process, or one that just ended
            continue
        if (b"submitit.core._submit" in command and str(sweep_dir).encode() in command
                and f"SUBMITIT_LOCAL_GLOBALID={rank}".encode() in environment):
            return int(proc.name)
    return None


def wait_for_step(run_dir: Path, step: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if (run_dir / "metrics.jsonl").exists() and any(m["step"] >= step for m in read_metrics(run_dir)):
            return
        time.sleep(0.02)
    raise AssertionError(f"the job never reached step {step}")


def test_sigusr2_to_one_task_requeues_the_job_and_it_resumes_exactly(tmp_path, cache_dir, torchrun_two):
    process = subprocess.Popen(local_launcher_command(tmp_path, cache_dir, 2), cwd=REPO, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "0"
    wait_for_step(run_dir, 2, process)
    rank1 = task_pid(tmp_path, rank=1)
    assert rank1 is not None, "task 1 of the job not found among the processes"
    os.kill(rank1, signal.SIGUSR2)  # rank 1 only: rank 0, the one that requeues, must learn of it from the others
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-3000:]

    [rank0_log] = [path.read_text() for path in tmp_path.glob(".submitit/*/*_0_log.out")]  # both runs, in order
    first_run, requeued, requeued_run = rank0_log.partition("Requeued job")
    assert requeued, "submitit did not requeue the job"
    stopped_at = int(first_run.split("stopped by signal SIGUSR2 at step ")[1].split(";")[0])
    assert 2 <= stopped_at < 30, "the signal came too late to stop the run in the middle"
    assert f"resuming from {run_dir / 'checkpoints' / 'last.pt'} at step {stopped_at}" in requeued_run
    assert "Job completed successfully" in requeued_run

    reference = torchrun_two / "rank0"
    a, b = weights(reference), weights(run_dir)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert losses(run_dir) == losses(reference)
